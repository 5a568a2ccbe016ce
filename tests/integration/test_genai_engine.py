"""The local ONNX Runtime GenAI engine: constrained decoding from random weights, limits, sampling, stops.

Every generation here runs in a child process: GenAI releases before 0.15 aborted the whole
process (a C++ assertion) on some guidance schemas, and an abort must fail one test, not
kill pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.fixtures.genai import LOCAL_CHAT_TOML
from tests.fixtures.models import REPO

pytestmark = pytest.mark.integration

# bounded schemas (FACTS.md): enums, booleans, strings with maxLength, arrays with maxItems
SCHEMAS: dict[str, dict[str, Any]] = {
    "flat": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "label": {"enum": ["yes", "no", "maybe"]},
            "note": {"type": "string", "maxLength": 12},
        },
        "required": ["ok", "label", "note"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "verdict": {
                "type": "object",
                "properties": {"valid": {"type": "boolean"}, "level": {"enum": ["low", "high"]}},
                "required": ["valid", "level"],
                "additionalProperties": False,
            },
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        },
        "required": ["verdict", "tags"],
        "additionalProperties": False,
    },
    "pydantic-style": {
        "title": "Answer",
        "type": "object",
        "properties": {
            "city": {"title": "City", "type": "string", "maxLength": 10},
            "capital": {"title": "Capital", "type": "boolean"},
        },
        "required": ["city", "capital"],
        "additionalProperties": False,
    },
}

PROBE = r"""
import json, sys
from hflambda.engines import get_pool
from hflambda.generation import ChatMessage, ChatRequest, ResponseFormat, AttemptFailed
from hflambda.registry import Task

cases = json.loads(sys.argv[1])
engine = get_pool().get("chat", Task.TEXT_GENERATION)
out = {}
def ask(content="What is the capital of France?", **options):
    fmt = options.pop("response_format", None)
    request = ChatRequest(messages=(ChatMessage("user", content),), response_format=ResponseFormat(**fmt) if fmt else ResponseFormat(), **options)
    try:
        c = engine.complete(request, timeout=20)
        return {"text": c.text, "finish": c.finish_reason, "prompt": c.prompt_tokens, "completion": c.completion_tokens}
    except AttemptFailed as exc:
        return {"error": exc.kind.value, "reason": exc.reason}
for name, schema in cases["schemas"].items():
    out[name] = ask(max_tokens=96, temperature=0, response_format={"type": "json_schema", "schema": schema})
out["sampled"] = [ask(max_tokens=96, temperature=1.0, response_format={"type": "json_schema", "schema": cases["schemas"]["flat"]}, seed=s) for s in (7, 7, 8)]
out["length"] = ask(max_tokens=5, temperature=0)
# a seed whose sampled text is long enough to hold a stop sequence (random weights often stop early)
for seed in range(1, 100):
    out["free"] = ask(max_tokens=32, temperature=1.0, seed=seed)
    free = out["free"]["text"]
    if len(free) >= 9 and "\ufffd" not in free[:9]:
        break
stop = free[cases["stop_from"][0]:cases["stop_from"][1]]
out["stop"] = ask(max_tokens=32, temperature=1.0, seed=seed, stop=(stop,)) if len(stop) == 3 else None
out["seeded"] = [ask(max_tokens=10, temperature=0.9, seed=s)["text"] for s in (11, 11, 12, 13)]
out["count"] = engine.count_tokens(["hello world", ""])
try:
    engine.complete(ChatRequest(messages=(ChatMessage("user", "hi"),), max_tokens=50), timeout=0)
    out["timeout"] = None
except AttemptFailed as exc:
    out["timeout"] = exc.kind.value
out["too_long"] = ask(content="word " * 2000, max_tokens=10)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory, genai_warmed: Any) -> dict[str, Any]:
    """Run every generation case once in a child process over the warmed tiny Qwen2."""
    registry = tmp_path_factory.mktemp("engine") / "models.toml"
    registry.write_text(LOCAL_CHAT_TOML.replace("@SOURCE@", str(genai_warmed.source_dir)))
    env = {
        **os.environ,
        "HFLAMBDA_MODEL_STORE": str(genai_warmed.store),
        "HFLAMBDA_REGISTRY": str(registry),
        "HFLAMBDA_PROFILE": "",
        "PYTHONPATH": str(REPO),
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    cases = {"schemas": SCHEMAS, "stop_from": [6, 9]}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(cases)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"engine probe died (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_constrained_decoding_gives_schema_valid_json_from_random_weights(
    probed: dict[str, Any], name: str
) -> None:
    answer = probed[name]
    assert "error" not in answer, answer
    jsonschema.validate(json.loads(answer["text"]), SCHEMAS[name])
    assert answer["finish"] == "stop"  # the grammar closed the document before max_tokens
    assert 0 < answer["completion"] < 96
    assert answer["text"][0] == "{" and answer["text"][-1] == "}"  # no free whitespace around the document


def test_sampled_json_is_valid_and_seeded(probed: dict[str, Any]) -> None:
    first, again, other = probed["sampled"]
    for answer in probed["sampled"]:
        assert answer["finish"] == "stop", answer
        jsonschema.validate(json.loads(answer["text"]), SCHEMAS["flat"])
    assert first == again  # the same seed samples the same tokens
    assert other["text"] != first["text"]


def test_max_tokens_bounds_the_answer(probed: dict[str, Any]) -> None:
    answer = probed["length"]
    assert answer["completion"] <= 5
    assert (answer["finish"] == "length") == (answer["completion"] == 5)
    assert answer["prompt"] > 5


def test_stop_sequences_cut_free_text(probed: dict[str, Any]) -> None:
    free = probed["free"]["text"]  # sampled with a fixed seed: the same tokens again until the stop
    assert probed["stop"] is not None, f"sampled text too short for the stop test: {free!r}"
    stop = free[6:9]
    assert probed["stop"]["text"] == free[: free.find(stop)]
    assert probed["stop"]["finish"] == "stop"
    assert probed["stop"]["completion"] <= probed["free"]["completion"]


def test_seeds_make_sampling_reproducible(probed: dict[str, Any]) -> None:
    a, b, c, d = probed["seeded"]
    assert a == b
    assert len({a, c, d}) > 1  # different seeds sample differently (random weights: near-uniform)


def test_token_counts_and_limits(probed: dict[str, Any]) -> None:
    hello, empty = probed["count"]
    assert hello >= 2 and empty == 0
    assert probed["timeout"] == "timeout"
    assert probed["too_long"]["error"] == "context_too_long"
    assert "context is 1024 tokens" in probed["too_long"]["reason"]


def test_engine_does_not_import_heavy_libraries(
    genai_warmed: Any, tmp_path: Path, chat_config: Callable[..., Path]
) -> None:
    chat_config(LOCAL_CHAT_TOML)
    code = (
        "import sys, json; from hflambda.engines import get_pool; from hflambda.registry import Task; "
        "get_pool().get('chat', Task.TEXT_GENERATION).count_tokens(['x']); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'optimum', 'huggingface_hub'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

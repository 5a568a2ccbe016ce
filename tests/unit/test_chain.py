"""Fallback chains with fake engines: order, every trigger, output validation, budget, exhausted errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hflambda.errors import FallbackExhausted, ModelNotFound, ModelNotReady
from hflambda.generation import (
    AttemptFailed,
    ChatEngine,
    ChatMessage,
    ChatRequest,
    Completion,
    FailureKind,
    ResponseFormat,
    chain_for,
    exhausted_status,
    run_chain,
    validate_output,
)
from hflambda.generation.base import guidance_schema
from hflambda.generation.chain import Attempt
from hflambda.registry import ModelSpec, Registry, parse_registry

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
    },
    "required": ["ok"],
    "additionalProperties": False,
}
REQUEST = ChatRequest(messages=(ChatMessage("user", "hi"),))


def registry(text: str) -> Registry:
    models, problems = parse_registry(text)
    assert problems == []
    return Registry(models=models)


def remote(alias: str, fallbacks: list[str] | None = None, timeout: float = 10) -> str:
    return (
        f'[models.{alias}]\nrepo = "p/{alias}"\ntask = "text-generation"\nengine = "remote"\n'
        f'base_url = "http://127.0.0.1:9/v1"\nprovider_model = "p/{alias}"\ntimeout_seconds = {timeout}\n'
        f"fallbacks = {json.dumps(fallbacks or [])}\n"
    )


@dataclass
class FakeClock:
    """A clock the fake engines advance."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeEngine:
    """Answers ``text`` or raises ``error``, taking ``seconds`` on the fake clock."""

    alias: str
    clock: FakeClock
    text: str = "hello"
    error: Exception | None = None
    seconds: float = 0.1
    timeouts: list[float] = field(default_factory=list)

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        self.timeouts.append(timeout)
        self.clock.now += min(self.seconds, timeout)
        if self.seconds > timeout:
            raise AttemptFailed(FailureKind.TIMEOUT, f"no answer within {timeout:.1f} s")
        if self.error is not None:
            raise self.error
        return Completion(
            text=self.text, finish_reason="stop", prompt_tokens=3, completion_tokens=2, engine="fake"
        )


def engines_for(engines: dict[str, FakeEngine | Exception]) -> Callable[[ModelSpec], ChatEngine]:
    def engine_for(spec: ModelSpec) -> ChatEngine:
        engine = engines[spec.alias]
        if isinstance(engine, Exception):
            raise engine
        return engine

    return engine_for


def test_engines_satisfy_the_contract() -> None:
    assert isinstance(FakeEngine("a", FakeClock()), ChatEngine)


def test_chain_order_is_breadth_first_and_each_alias_once() -> None:
    reg = registry(remote("a", ["b", "c"]) + remote("b", ["d", "c"]) + remote("c", ["d"]) + remote("d"))
    assert [s.alias for s in chain_for(reg, "a")] == ["a", "b", "c", "d"]
    assert [s.alias for s in chain_for(reg, "b")] == ["b", "d", "c"]
    assert [s.alias for s in chain_for(reg, "c")] == ["c", "d"]


def test_chain_of_an_unknown_or_non_generation_alias_is_model_not_found() -> None:
    reg = registry(
        remote("a") + '[models.embed]\nrepo = "x/y"\ntask = "embeddings"\nsource = "file:///tmp/x"\n'
    )
    with pytest.raises(ModelNotFound, match="'nope' is not a text-generation model"):
        chain_for(reg, "nope")
    with pytest.raises(ModelNotFound, match="Known: a"):
        chain_for(reg, "embed")


def test_first_answer_wins_and_names_its_model() -> None:
    clock = FakeClock()
    reg = registry(remote("a", ["b"]) + remote("b"))
    result = run_chain(
        REQUEST,
        chain_for(reg, "a"),
        engines_for({"a": FakeEngine("a", clock, "from a"), "b": FakeEngine("b", clock)}),
        budget_seconds=27,
        clock=clock,
    )
    assert result.alias == "a" and result.completion.text == "from a"
    assert [a.line() for a in result.attempts] == ["a: ok"]


@pytest.mark.parametrize(
    "failure",
    [
        ModelNotReady("a", "not warmed: CURRENT does not exist; run warmup"),
        AttemptFailed(FailureKind.NOT_FOUND, "provider answered 404"),
        AttemptFailed(FailureKind.RATE_LIMITED, "provider answered 429", retry_after=3),
        AttemptFailed(FailureKind.UPSTREAM, "provider answered 500"),
        AttemptFailed(FailureKind.UNAVAILABLE, "provider answered 503"),
        AttemptFailed(FailureKind.CONTEXT_TOO_LONG, "prompt is 9000 tokens"),
        RuntimeError("a bug in an engine"),
    ],
    ids=["not-warmed", "404", "429", "500", "503", "context", "engine-bug"],
)
def test_each_failure_moves_to_the_next_model(failure: Exception) -> None:
    clock = FakeClock()
    reg = registry(remote("a", ["b"]) + remote("b"))
    first: FakeEngine | Exception = (
        failure if isinstance(failure, ModelNotReady) else FakeEngine("a", clock, error=failure)
    )
    result = run_chain(
        REQUEST,
        chain_for(reg, "a"),
        engines_for({"a": first, "b": FakeEngine("b", clock, "from b")}),
        budget_seconds=27,
        clock=clock,
    )
    assert result.alias == "b" and result.completion.text == "from b"
    failed, answered = result.attempts
    assert not failed.ok and answered.ok
    expected = {ModelNotReady: FailureKind.NOT_READY, RuntimeError: FailureKind.UPSTREAM}.get(
        type(failure), getattr(failure, "kind", None)
    )
    assert failed.kind == expected
    assert failed.reason


def test_timeouts_use_the_models_limit_within_the_budget() -> None:
    clock = FakeClock()
    reg = registry(remote("a", ["b"], timeout=4) + remote("b", timeout=20))
    slow = FakeEngine("a", clock, seconds=30)
    fast = FakeEngine("b", clock, "b answers", seconds=1)
    result = run_chain(
        REQUEST, chain_for(reg, "a"), engines_for({"a": slow, "b": fast}), budget_seconds=10, clock=clock
    )
    assert result.alias == "b"
    assert slow.timeouts == [4] and fast.timeouts == [6]  # b gets what is left of the 10 s budget
    assert [a.kind for a in result.attempts] == [FailureKind.TIMEOUT, None]


def test_an_exhausted_budget_skips_the_rest_and_is_504() -> None:
    clock = FakeClock()
    reg = registry(remote("a", ["b", "c"], timeout=20) + remote("b") + remote("c"))
    engines = {name: FakeEngine(name, clock, seconds=30) for name in "abc"}
    with pytest.raises(FallbackExhausted) as caught:
        run_chain(REQUEST, chain_for(reg, "a"), engines_for(dict(engines)), budget_seconds=5, clock=clock)
    assert caught.value.status == 504
    assert engines["b"].timeouts == [] and engines["c"].timeouts == []
    assert str(caught.value).splitlines() == [
        "No model in the chain could answer:",
        "- a: timeout: no answer within 5.0 s",
        "- b: skipped: not tried: 5 s request budget spent",
        "- c: skipped: not tried: 5 s request budget spent",
    ]


@pytest.mark.parametrize(
    ("text", "fmt", "fragment"),
    [
        ("not json", ResponseFormat(type="json_object"), "not valid JSON"),
        ('{"ok": tru', ResponseFormat(type="json_object"), "not valid JSON"),
        ("[1, 2]", ResponseFormat(type="json_object"), "not an object"),
        (
            '{"ok": "yes"}',
            ResponseFormat(type="json_schema", schema=SCHEMA),
            "at ok: 'yes' is not of type 'boolean'",
        ),
        (
            '{"ok": true, "extra": 1}',
            ResponseFormat(type="json_schema", schema=SCHEMA),
            "Additional properties",
        ),
        ('{"ok": true, "tags": ["long"]}', ResponseFormat(type="json_schema", schema=SCHEMA), "at tags/0"),
    ],
)
def test_invalid_output_is_a_failed_attempt(text: str, fmt: ResponseFormat, fragment: str) -> None:
    clock = FakeClock()
    reg = registry(remote("a", ["b"]) + remote("b"))
    request = ChatRequest(messages=REQUEST.messages, response_format=fmt)
    engines = engines_for({"a": FakeEngine("a", clock, text), "b": FakeEngine("b", clock, '{"ok": true}')})
    result = run_chain(request, chain_for(reg, "a"), engines, budget_seconds=27, clock=clock)
    assert result.alias == "b" and result.parsed == {"ok": True}
    failed = result.attempts[0]
    assert failed.kind == FailureKind.INVALID_OUTPUT
    assert fragment in (failed.reason or "")


def test_free_text_is_not_parsed() -> None:
    assert validate_output(ResponseFormat(), "anything {") is None
    assert validate_output(
        ResponseFormat(type="json_schema", schema=SCHEMA), '{"ok": false, "tags": ["a"]}'
    ) == {"ok": False, "tags": ["a"]}


def test_exhausted_error_lists_every_attempt_one_line_each() -> None:
    clock = FakeClock()
    reg = registry(remote("a", ["b", "c"]) + remote("b") + remote("c"))
    engines = engines_for(
        {
            "a": FakeEngine(
                "a",
                clock,
                error=AttemptFailed(
                    FailureKind.NOT_FOUND, "provider answered 404: model `p/a` does not exist"
                ),
            ),
            "b": ModelNotReady("b", "not warmed: run warmup"),
            "c": FakeEngine("c", clock, "not json"),
        }
    )
    request = ChatRequest(messages=REQUEST.messages, response_format=ResponseFormat(type="json_object"))
    with pytest.raises(FallbackExhausted) as caught:
        run_chain(request, chain_for(reg, "a"), engines, budget_seconds=27, clock=clock)
    error = caught.value
    assert error.status == 502
    lines = str(error).splitlines()
    assert lines[1] == "- a: not_found: provider answered 404: model `p/a` does not exist"
    assert lines[2] == "- b: not_ready: not warmed: run warmup"
    assert lines[3].startswith("- c: invalid_output: answer is not valid JSON")
    assert [a["model"] for a in error.details["attempts"]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("kinds", "status"),
    [
        ([FailureKind.NOT_READY, FailureKind.RATE_LIMITED, FailureKind.UNAVAILABLE], 503),
        ([FailureKind.RATE_LIMITED, FailureKind.INVALID_OUTPUT], 502),
        ([FailureKind.NOT_FOUND], 502),
        ([FailureKind.CONTEXT_TOO_LONG, FailureKind.UPSTREAM], 502),
        ([FailureKind.NOT_FOUND, FailureKind.TIMEOUT], 504),
        ([FailureKind.TIMEOUT, FailureKind.SKIPPED], 504),
    ],
)
def test_exhausted_status(kinds: list[FailureKind], status: int) -> None:
    assert (
        exhausted_status([Attempt(f"m{i}", False, 0.1, kind, "x") for i, kind in enumerate(kinds)]) == status
    )


def test_guidance_schema_fixes_whitespace_without_touching_the_callers_schema() -> None:
    original = json.loads(json.dumps(SCHEMA))
    constrained = guidance_schema(ResponseFormat(type="json_schema", schema=SCHEMA))
    assert constrained is not None and constrained["x-guidance"] == {"whitespace_flexible": False}
    assert original == SCHEMA  # untouched
    assert guidance_schema(ResponseFormat(type="json_object")) == {
        "type": "object",
        "x-guidance": {"whitespace_flexible": False},
    }
    assert guidance_schema(ResponseFormat()) is None
    own = {**SCHEMA, "x-guidance": {"whitespace_flexible": True}}
    assert guidance_schema(ResponseFormat(type="json_schema", schema=own))["x-guidance"] == {
        "whitespace_flexible": True
    }  # type: ignore[index]

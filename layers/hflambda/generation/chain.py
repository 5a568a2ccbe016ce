"""Fallback chains: try the requested model, then its fallbacks, within the request's time budget.

The chain of alias ``a`` is ``a``, then ``a.fallbacks`` in order, then *their* fallbacks
(breadth first), each alias once. An attempt fails on any ``FailureKind`` — model missing
or not warmed, provider 404/429/5xx/timeout, an answer that is not the requested JSON,
a prompt over the context — and the next alias is tried while time remains. The answer
names the alias that answered and lists every attempt; when no alias answers,
``FallbackExhausted`` lists each attempt with its reason, one line each, with status:

- 504 when the chain ran out of time (the last attempt timed out or was skipped),
- 503 when every failure was temporary (not warmed, 429, 503: retry later),
- 502 otherwise (a model or provider is broken, or answers are unusable).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hflambda.errors import ContextLengthExceeded, FallbackExhausted, HflambdaError, ModelNotReady
from hflambda.generation.base import ChatEngine, ChatRequest, Completion, stream_completion, validate_output
from hflambda.generation.exceptions import OUT_OF_TIME, TRANSIENT, AttemptFailed, FailureKind
from hflambda.generation.tools import check_tool_calls
from hflambda.registry import ModelSpec, Registry, Task
from hflambda.telemetry import logger

__all__ = [
    "Attempt",
    "ChainResult",
    "StreamEvent",
    "StreamStart",
    "chain_for",
    "exhausted_status",
    "finish",
    "run_chain",
    "stream_chain",
]

# an attempt with less time than this left is not started (its answer could not arrive)
MIN_ATTEMPT_SECONDS = 1.0

EngineFor = Callable[[ModelSpec], ChatEngine]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model tried: whether it answered, else the trigger and reason."""

    alias: str
    ok: bool
    seconds: float
    kind: FailureKind | None = None
    reason: str | None = None

    def line(self) -> str:
        """``alias: ok`` or ``alias: <kind>: <reason>``."""
        return f"{self.alias}: ok" if self.ok else f"{self.alias}: {self.kind}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ChainResult:
    """The answer, who gave it, and every attempt on the way."""

    alias: str
    completion: Completion
    attempts: list[Attempt] = field(default_factory=list)
    parsed: Any = None  # the JSON value when JSON was requested


def chain_for(registry: Registry, alias: str) -> list[ModelSpec]:
    """``alias`` and its fallbacks, breadth first, each once (ModelNotFound for an unknown alias)."""
    first = registry.get(alias, task=Task.TEXT_GENERATION)
    order: list[ModelSpec] = []
    seen: set[str] = set()
    queue: deque[ModelSpec] = deque([first])
    while queue:
        spec = queue.popleft()
        if spec.alias in seen:
            continue
        seen.add(spec.alias)
        order.append(spec)
        for target in spec.fallbacks:
            target_spec = registry.models.get(target)
            if target_spec is not None and target_spec.task == Task.TEXT_GENERATION and target not in seen:
                queue.append(target_spec)
    return order


def exhausted_status(attempts: list[Attempt]) -> int:
    """502/503/504 for a chain where every attempt failed (see the module docstring)."""
    kinds = [a.kind for a in attempts if a.kind is not None]
    if kinds and kinds[-1] in OUT_OF_TIME:
        return 504
    if kinds and all(k in TRANSIENT for k in kinds):
        return 503
    return 502


def _engine(engine_for: EngineFor, spec: ModelSpec) -> ChatEngine:
    try:
        return engine_for(spec)
    except ModelNotReady as exc:
        raise AttemptFailed(FailureKind.NOT_READY, exc.reason) from None


def finish(request: ChatRequest, completion: Completion) -> Any:
    """Check an answer against what was asked; the parsed JSON (or None). AttemptFailed if it fails.

    An answer cut off by ``max_tokens`` is returned as it is, like OpenAI does: status 200,
    ``finish_reason: "length"``, the text so far (with ``json_schema``: JSON that stops
    mid-document and does not validate; with tools: that text, no calls).
    """
    if completion.finish_reason == "length":
        return None
    if completion.tool_calls or request.calls_tools:
        check_tool_calls(request, completion.tool_calls)
    if completion.tool_calls:
        return None
    return validate_output(request.response_format, completion.text)


def _failed(spec: ModelSpec, exc: Exception, seconds: float) -> Attempt:
    """The Attempt for an exception; engine internals go to the log, never into the reason."""
    if isinstance(exc, AttemptFailed):
        return Attempt(spec.alias, False, seconds, exc.kind, exc.reason)
    if isinstance(exc, HflambdaError):  # e.g. a store problem surfacing while loading
        return Attempt(spec.alias, False, seconds, FailureKind.UPSTREAM, f"{exc.code}: {exc.message}")
    # an engine bug or a native error (a grammar parser dump, a binding's cast error) costs
    # one attempt, never the whole request, and its text stays in the log
    logger.exception(
        "generation engine failed", extra={"model": spec.alias, "error_type": type(exc).__name__}
    )
    return Attempt(
        spec.alias,
        False,
        seconds,
        FailureKind.UPSTREAM,
        f"the engine failed ({type(exc).__name__}; details are in the server log)",
    )


def _exhausted(attempts: list[Attempt]) -> FallbackExhausted:
    pairs = [(a.alias, f"{a.kind}: {a.reason}") for a in attempts]
    tried = [a.kind for a in attempts if a.kind != FailureKind.SKIPPED]
    if tried and all(k == FailureKind.CONTEXT_TOO_LONG for k in tried):
        return ContextLengthExceeded(pairs)
    return FallbackExhausted(pairs, status=exhausted_status(attempts))


def _within_budget(
    chain: list[ModelSpec], attempts: list[Attempt], budget_seconds: float, clock: Callable[[], float]
) -> Iterator[tuple[ModelSpec, float]]:
    """Each model of ``chain`` with its timeout while the request budget lasts; one it cannot
    reach any more is recorded in ``attempts`` as skipped."""
    deadline = clock() + budget_seconds
    for spec in chain:
        remaining = deadline - clock()
        if remaining < MIN_ATTEMPT_SECONDS:
            attempts.append(
                Attempt(
                    spec.alias,
                    False,
                    0.0,
                    FailureKind.SKIPPED,
                    f"not tried: {budget_seconds:g} s request budget spent",
                )
            )
            continue
        yield spec, min(spec.timeout_seconds, remaining)


def run_chain(
    request: ChatRequest,
    chain: list[ModelSpec],
    engine_for: EngineFor,
    *,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> ChainResult:
    """The first answer in ``chain`` that passes validation; FallbackExhausted listing every attempt
    (ContextLengthExceeded, a 400, when the prompt fits no model of the chain)."""
    attempts: list[Attempt] = []
    for spec, timeout in _within_budget(chain, attempts, budget_seconds, clock):
        started = clock()
        try:
            completion = _engine(engine_for, spec).complete(request, timeout=timeout)
            parsed = finish(request, completion)
        except Exception as exc:
            attempts.append(_failed(spec, exc, round(clock() - started, 3)))
            continue
        attempts.append(Attempt(spec.alias, True, round(clock() - started, 3)))
        if len(attempts) > 1:
            logger.warning(
                "answered by a fallback",
                extra={"model": spec.alias, "attempts": [a.line() for a in attempts]},
            )
        return ChainResult(alias=spec.alias, completion=completion, attempts=attempts, parsed=parsed)
    raise _exhausted(attempts)


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The alias that answers the stream, and the attempts that failed before it."""

    alias: str
    attempts: list[Attempt]


StreamEvent = StreamStart | str | ChainResult


def stream_chain(
    request: ChatRequest,
    chain: list[ModelSpec],
    engine_for: EngineFor,
    *,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[StreamEvent]:
    """``run_chain`` for streaming: ``StreamStart``, then text pieces, then the ``ChainResult``.

    The fallback chain runs until an attempt produces its first piece: free text streams
    from then on as it is generated (a failure after that ends the stream with the error;
    the text already sent cannot be taken back). JSON answers (a response format, tool
    calls) are validated whole before their first byte is sent, so a fallback still
    answers when one is invalid. When no model answers, the first ``next()`` raises
    FallbackExhausted, before anything was sent.
    """
    attempts: list[Attempt] = []
    for spec, timeout in _within_budget(chain, attempts, budget_seconds, clock):
        started = clock()
        parsed: Any = None
        try:
            pieces = stream_completion(_engine(engine_for, spec), request, timeout=timeout)
            first = list(pieces) if request.wants_json else [next(pieces)]
            if isinstance(first[-1], Completion):
                parsed = finish(request, first[-1])
        except Exception as exc:
            attempts.append(_failed(spec, exc, round(clock() - started, 3)))
            continue
        yield StreamStart(spec.alias, list(attempts))
        completion: Completion | None = None
        for item in itertools.chain(first, pieces):
            if isinstance(item, Completion):
                completion = item
            elif item:
                yield item
        assert completion is not None, "an engine stream ends with its Completion"
        if not request.wants_json:
            parsed = finish(request, completion)
        attempts.append(Attempt(spec.alias, True, round(clock() - started, 3)))
        yield ChainResult(alias=spec.alias, completion=completion, attempts=attempts, parsed=parsed)
        return
    raise _exhausted(attempts)

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

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hflambda.errors import FallbackExhausted, HflambdaError, ModelNotReady
from hflambda.generation.base import ChatEngine, ChatRequest, Completion, validate_output
from hflambda.generation.exceptions import OUT_OF_TIME, TRANSIENT, AttemptFailed, FailureKind
from hflambda.registry import ModelSpec, Registry, Task
from hflambda.telemetry import logger

__all__ = ["Attempt", "ChainResult", "chain_for", "exhausted_status", "run_chain"]

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


def _attempt(engine_for: EngineFor, spec: ModelSpec, request: ChatRequest, timeout: float) -> tuple[Completion, Any]:
    try:
        engine = engine_for(spec)
    except ModelNotReady as exc:
        raise AttemptFailed(FailureKind.NOT_READY, exc.reason) from None
    completion = engine.complete(request, timeout=timeout)
    parsed = validate_output(request.response_format, completion.text)
    return completion, parsed


def run_chain(
    request: ChatRequest,
    chain: list[ModelSpec],
    engine_for: EngineFor,
    *,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> ChainResult:
    """The first answer in ``chain`` that passes validation; FallbackExhausted listing every attempt."""
    deadline = clock() + budget_seconds
    attempts: list[Attempt] = []
    for spec in chain:
        remaining = deadline - clock()
        if remaining < MIN_ATTEMPT_SECONDS:
            attempts.append(Attempt(spec.alias, False, 0.0, FailureKind.SKIPPED, f"not tried: {budget_seconds:g} s request budget spent"))
            continue
        timeout = min(spec.timeout_seconds, remaining)
        started = clock()
        try:
            completion, parsed = _attempt(engine_for, spec, request, timeout)
        except AttemptFailed as exc:
            attempts.append(Attempt(spec.alias, False, round(clock() - started, 3), exc.kind, exc.reason))
            continue
        except HflambdaError as exc:  # e.g. a store problem surfacing while loading
            attempts.append(Attempt(spec.alias, False, round(clock() - started, 3), FailureKind.UPSTREAM, f"{exc.code}: {exc.message}"))
            continue
        except Exception as exc:  # an engine bug must cost one attempt, never the whole request
            logger.exception("generation engine failed", extra={"model": spec.alias})
            attempts.append(Attempt(spec.alias, False, round(clock() - started, 3), FailureKind.UPSTREAM, f"engine error {type(exc).__name__}: {exc}"))
            continue
        attempts.append(Attempt(spec.alias, True, round(clock() - started, 3)))
        if len(attempts) > 1:
            logger.warning("answered by a fallback", extra={"model": spec.alias, "attempts": [a.line() for a in attempts]})
        return ChainResult(alias=spec.alias, completion=completion, attempts=attempts, parsed=parsed)
    raise FallbackExhausted([(a.alias, f"{a.kind}: {a.reason}") for a in attempts], status=exhausted_status(attempts))

"""Why one model of a fallback chain could not answer, and why warmup rejected a remote model.

``AttemptFailed`` never reaches a client on its own: the chain collects one per model and,
when none answered, raises ``hflambda.errors.FallbackExhausted`` listing them all.
``RemoteCheckFailed`` is warmup's (serving turns an unreadable key into an ``AttemptFailed``).
That is why these live here and not in ``hflambda.errors``, which holds every error a client
can receive (see its docstring).
"""

from __future__ import annotations

from enum import StrEnum

from hflambda.errors import HflambdaError, UpstreamError

__all__ = ["AttemptFailed", "FailureKind", "RemoteCheckFailed", "RemoteModelMissing"]


class FailureKind(StrEnum):
    """The fallback trigger a failed attempt stands for (first word of its reason line)."""

    NOT_READY = "not_ready"  # local model not warmed, or its files cannot be loaded
    NOT_FOUND = "not_found"  # the provider does not know the model id (404)
    RATE_LIMITED = "rate_limited"  # provider 429
    UNAVAILABLE = "unavailable"  # provider 503
    UPSTREAM = "upstream_error"  # provider 5xx/4xx, unreachable, unreadable answer, secret unreadable
    TIMEOUT = "timeout"  # no answer within the attempt's share of the request budget
    INVALID_OUTPUT = "invalid_output"  # not JSON, or JSON that does not match the requested schema
    CONTEXT_TOO_LONG = "context_too_long"  # prompt (+ max_tokens) over the model's context
    SKIPPED = "skipped"  # not tried: the request's time budget was spent


# kinds that say "try again later" rather than "this is broken"
TRANSIENT = frozenset({FailureKind.NOT_READY, FailureKind.RATE_LIMITED, FailureKind.UNAVAILABLE})
# kinds that say "out of time"
OUT_OF_TIME = frozenset({FailureKind.TIMEOUT, FailureKind.SKIPPED})


class AttemptFailed(HflambdaError):
    """One model of the chain failed; the chain moves on to the next."""

    status = 502
    code = "attempt_failed"

    def __init__(self, kind: FailureKind, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{kind.value}: {reason}", kind=kind.value, retry_after=retry_after)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after


class RemoteCheckFailed(UpstreamError):
    """Warmup could not confirm that a remote model answers at its provider."""

    code = "remote_check_failed"


class RemoteModelMissing(RemoteCheckFailed):
    """The provider does not serve the registry's ``provider_model`` (the "model not found" chain)."""

    code = "remote_model_missing"

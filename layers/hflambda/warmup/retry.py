"""Bounded retries for source fetches: exponential backoff with jitter, server hints honoured,
and never past the time the invocation has left.

huggingface_hub 0.36 does not retry 429s at all (FACTS.md), so this is warmup's own. A wait is
the larger of the server's hint (``Retry-After``, or the ``t=`` of the IETF ``RateLimit``
header the Hub sends) and our backoff, plus jitter so that parallel warmups do not return in
lockstep. A retry whose wait would eat into the reserve the runner keeps for finishing the
current model is not attempted; the model fails with the reason instead (its last good
revision stays live and the next scheduled run tries again).
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from hflambda.errors import HflambdaError, SourceError
from hflambda.telemetry import logger

__all__ = ["Deadline", "RetryPolicy", "Transient", "retry_hint_seconds", "with_retries"]

T = TypeVar("T")

_RATELIMIT_T = re.compile(r"(?:^|[;,\s])t=(\d+(?:\.\d+)?)")
_RATELIMIT_RESET = re.compile(r"(?:^|[;,\s])reset=(\d+(?:\.\d+)?)")


def retry_hint_seconds(headers: Mapping[str, str] | None, *, now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait: ``Retry-After`` (seconds or HTTP date), else the
    ``RateLimit`` header's ``t=`` (draft-ietf-httpapi-ratelimit-headers, what the Hub sends)
    or ``reset=``, else ``RateLimit-Reset`` / ``X-RateLimit-Reset-After``. None when absent."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                now = now or datetime.now(UTC)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - now).total_seconds())
    ratelimit = lower.get("ratelimit")
    if ratelimit:
        match = _RATELIMIT_T.search(ratelimit) or _RATELIMIT_RESET.search(ratelimit)
        if match:
            return float(match.group(1))
    for name in ("ratelimit-reset", "x-ratelimit-reset-after"):
        raw = lower.get(name)
        if raw:
            try:
                return max(0.0, float(raw.strip()))
            except ValueError:
                continue
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one fetch.

    Defaults: 6 attempts, backoff 1 s, 2 s, 4 s ... capped at 60 s per wait, jitter up to
    25 % on top; a server hint longer than ``max_hint_seconds`` (5 min, the Hub's window)
    is not waited for inside one invocation.
    """

    max_attempts: int = 6
    base_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    max_hint_seconds: float = 300.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff after failed attempt number ``attempt`` (1-based), capped."""
        return float(min(self.max_backoff_seconds, self.base_seconds * (2 ** max(0, attempt - 1))))

    def wait(self, attempt: int, hint: float | None) -> float:
        """Seconds to sleep before the next attempt: at least the server's hint and our backoff,
        plus jitter (only ever added, so a ``Retry-After`` is never undercut)."""
        base = max(self.backoff(attempt), hint or 0.0)
        return base + base * self.jitter * self.rng()


class Deadline:
    """The time an invocation has left, minus the reserve the runner keeps for wrapping up."""

    def __init__(
        self, remaining_seconds: Callable[[], float] | None = None, reserve_seconds: float = 0.0
    ) -> None:
        self._remaining = remaining_seconds
        self.reserve_seconds = reserve_seconds

    def budget(self) -> float:
        """Seconds that may still be spent on this fetch (inf when unbounded, e.g. the CLI)."""
        if self._remaining is None:
            return math.inf
        return self._remaining() - self.reserve_seconds

    def allows(self, seconds: float) -> bool:
        """True when waiting ``seconds`` still leaves the reserve."""
        return self.budget() > seconds


@dataclass(frozen=True)
class Transient:
    """A failure worth retrying, with the server's wait hint when it sent one."""

    reason: str
    hint: float | None = None
    rate_limited: bool = False


GiveUp = Callable[[str, Transient], HflambdaError]


def _default_give_up(message: str, last: Transient) -> HflambdaError:
    return SourceError(message)


def with_retries(
    operation: Callable[[], T],
    *,
    classify: Callable[[BaseException], Transient | None],
    what: str,
    policy: RetryPolicy | None = None,
    deadline: Deadline | None = None,
    give_up: GiveUp = _default_give_up,
) -> T:
    """Run ``operation`` until it succeeds, a failure is permanent, or the budget is spent.

    ``classify`` maps an exception to a Transient (retry), raises a typed HflambdaError
    (permanent: it propagates) or returns None (unexpected: the original is re-raised).
    ``give_up`` builds the error raised when retries or time run out.
    """
    policy = policy or RetryPolicy()
    deadline = deadline or Deadline()
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except HflambdaError:
            raise
        except Exception as exc:
            transient = classify(exc)
            if transient is None:
                raise
        if attempt >= policy.max_attempts:
            raise give_up(
                f"{what}: still failing after {attempt} attempts; last error: {transient.reason}", transient
            )
        if transient.hint is not None and transient.hint > policy.max_hint_seconds:
            raise give_up(
                f"{what}: the server asks to wait {transient.hint:.0f} s ({transient.reason}), longer than "
                f"{policy.max_hint_seconds:.0f} s; the next scheduled run retries",
                transient,
            )
        wait = policy.wait(attempt, transient.hint)
        if not deadline.allows(wait):
            raise give_up(
                f"{what}: gave up after {attempt} attempt(s) ({transient.reason}); waiting {wait:.1f} s would "
                f"leave less than the {deadline.reserve_seconds:.0f} s reserve of this invocation",
                transient,
            )
        logger.warning(
            "transient fetch failure; retrying",
            extra={"what": what, "attempt": attempt, "wait_s": round(wait, 2), "reason": transient.reason},
        )
        policy.sleep(wait)

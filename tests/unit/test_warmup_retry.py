"""Retry hints, backoff and the time budget (pure: no sleeping, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from hflambda.errors import HubAccessDenied, HubRateLimited, SourceError
from hflambda.warmup.retry import Deadline, RetryPolicy, Transient, retry_hint_seconds, with_retries


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"RateLimit": '"api";r=0;t=55'}, 55.0),
        ({"RateLimit": "limit=100, remaining=0, reset=12"}, 12.0),
        ({"RateLimit-Reset": "30"}, 30.0),
        ({"Retry-After": "3", "RateLimit": '"api";r=0;t=55'}, 3.0),  # Retry-After wins
        ({"Content-Type": "text/plain"}, None),
        ({}, None),
    ],
)
def test_retry_hint_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_hint_seconds(headers) == expected


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    when = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_hint_seconds({"Retry-After": when}, now=now) == 90.0


def test_wait_honours_the_hint_and_only_adds_jitter() -> None:
    policy = RetryPolicy(base_seconds=1, max_backoff_seconds=8, jitter=0.25, rng=lambda: 1.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]
    assert policy.wait(1, 30) == 30 * 1.25
    assert policy.wait(4, 2) == 8 * 1.25  # the backoff grew past the hint
    assert RetryPolicy(rng=lambda: 0.0).wait(1, 5) == 5


def test_transient_failures_are_retried_until_success() -> None:
    waits: list[float] = []
    calls = iter([Transient("HTTP 500"), Transient("429", hint=2, rate_limited=True), None])

    def operation() -> str:
        failure = next(calls)
        if failure is not None:
            raise RuntimeError(failure.reason)
        return "ok"

    def classify(exc: BaseException) -> Transient:
        return Transient(str(exc), hint=2 if "429" in str(exc) else None)

    policy = RetryPolicy(base_seconds=0.5, sleep=waits.append, rng=lambda: 0.0)
    assert with_retries(operation, classify=classify, what="x", policy=policy) == "ok"
    assert waits == [0.5, 2.0]


def test_permanent_failures_are_not_retried() -> None:
    attempts = []

    def operation() -> None:
        attempts.append(1)
        raise KeyError("boom")

    def classify(exc: BaseException) -> Transient:
        raise HubAccessDenied("gated")

    with pytest.raises(HubAccessDenied):
        with_retries(operation, classify=classify, what="x", policy=RetryPolicy(sleep=lambda s: None))
    with pytest.raises(KeyError):  # unknown failures surface as they are
        with_retries(operation, classify=lambda e: None, what="x", policy=RetryPolicy(sleep=lambda s: None))
    assert len(attempts) == 2


def test_gives_up_after_max_attempts() -> None:
    attempts = []

    def operation() -> None:
        attempts.append(1)
        raise RuntimeError("HTTP 502")

    with pytest.raises(SourceError, match="after 3 attempts; last error: HTTP 502"):
        with_retries(
            operation,
            classify=lambda e: Transient(str(e)),
            what="fetching x",
            policy=RetryPolicy(max_attempts=3, sleep=lambda s: None),
        )
    assert len(attempts) == 3


def test_gives_up_when_the_wait_would_eat_the_reserve() -> None:
    slept: list[float] = []

    def give_up(message: str, last: Transient) -> HubRateLimited:
        return HubRateLimited(message)

    def operation() -> None:
        raise RuntimeError("429")

    deadline = Deadline(lambda: 100.0, reserve_seconds=60)  # 40 s to spend
    with pytest.raises(HubRateLimited, match=r"waiting 45\.0 s would leave less than the 60 s reserve"):
        with_retries(
            operation,
            classify=lambda e: Transient("429", hint=45, rate_limited=True),
            what="x",
            policy=RetryPolicy(sleep=slept.append, rng=lambda: 0.0),
            deadline=deadline,
            give_up=give_up,
        )
    assert slept == []
    with pytest.raises(SourceError, match="asks to wait 3600 s"):
        with_retries(
            operation,
            classify=lambda e: Transient("429", hint=3600),
            what="x",
            policy=RetryPolicy(sleep=slept.append),
        )
    assert Deadline().budget() == float("inf")

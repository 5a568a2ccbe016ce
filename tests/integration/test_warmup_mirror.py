"""``hflambda mirror`` copies a pinned Hub snapshot to S3 (moto); warming from that s3://
mirror gives the same revision, byte for byte, as warming from hf:// — without the Hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hflambda.registry import load_registry
from hflambda.store import Manifest, ModelStore
from hflambda.warmup import ModelResult, run_warmup
from tests.fixtures.hub import CLASSIFIER_REPO, HubWorld, classifier, fast_retry, hub_registry, hub_settings

pytestmark = pytest.mark.integration

BUCKET = "hflambda-models"
MIRROR = f"s3://{BUCKET}/mirror/tiny"


@pytest.fixture
def cli_env(
    fake_hub: HubWorld, tmp_path: Path, warm_aws: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A bucket, a registry pinning classifier revision B, and the env the CLI reads."""
    import boto3

    from hflambda.settings import get_settings

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    registry = hub_registry(tmp_path / "models.toml", {"classify": classifier(fake_hub.rev_b)})
    for name, value in {
        "HFLAMBDA_REGISTRY": str(registry),
        "HFLAMBDA_PROFILE": "",
        "HFLAMBDA_HF_ENDPOINT": fake_hub.url,
        "HFLAMBDA_MODEL_STORE": str(tmp_path / "unused"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HFLAMBDA_HF_TOKEN_SECRET", raising=False)
    get_settings.cache_clear()
    yield registry
    get_settings.cache_clear()


def run_mirror(*args: str) -> dict[str, object]:
    from hflambda.cli import app

    result = CliRunner().invoke(app, ["mirror", "classify", MIRROR, "--json", *args])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def warm(world: HubWorld, tmp_path: Path, name: str, **table: object) -> tuple[ModelResult, Manifest]:
    registry = hub_registry(tmp_path / f"{name}.toml", {"classify": classifier(world.rev_b, **table)})
    settings = hub_settings(tmp_path / name, registry, world)
    outcome = run_warmup(
        load_registry(registry),
        ModelStore(settings.model_store),
        settings,
        source_options={"retry": fast_retry()},
    ).models[0]
    manifest = (
        ModelStore(settings.model_store).resolve("classify", verify_hashes=True).manifest
        if outcome.status == "published"
        else None
    )
    return outcome, manifest  # type: ignore[return-value]


def test_mirror_then_warm_from_s3_is_identical_to_the_hub(
    cli_env: Path, fake_hub: HubWorld, tmp_path: Path
) -> None:
    import boto3

    served = fake_hub.hub.repos[CLASSIFIER_REPO].commits[fake_hub.rev_b]
    mirrored = run_mirror()
    assert mirrored["skipped"] is False and mirrored["source"] == MIRROR
    assert {n: e["sha256"] for n, e in mirrored["files"].items()} == {n: f.sha256 for n, f in served.items()}  # type: ignore[union-attr]
    keys = {
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="mirror/tiny/")["Contents"]
    }
    assert keys == {f"mirror/tiny/{fake_hub.rev_b}/{n}" for n in served} | {
        f"mirror/tiny/{fake_hub.rev_b}.mirror.json"
    }

    fake_hub.hub.reset()
    assert run_mirror()["skipped"] is True  # already complete: nothing fetched again
    assert fake_hub.hub.count() == 0

    from_hub, hub_manifest = warm(fake_hub, tmp_path, "from-hub")
    fake_hub.hub.reset()
    from_s3, s3_manifest = warm(fake_hub, tmp_path, "from-s3", source=MIRROR)
    assert from_hub.status == from_s3.status == "published", (from_hub, from_s3)
    assert fake_hub.hub.count() == 0  # the s3:// warmup never touched the Hub
    assert s3_manifest.revision == hub_manifest.revision == fake_hub.rev_b
    assert s3_manifest.source_files == hub_manifest.source_files
    assert {n: e.sha256 for n, e in s3_manifest.files.items()} == {
        n: e.sha256 for n, e in hub_manifest.files.items()
    }
    assert s3_manifest.export == hub_manifest.export


def test_warm_from_a_mirror_without_the_revision(cli_env: Path, fake_hub: HubWorld, tmp_path: Path) -> None:
    outcome, _ = warm(fake_hub, tmp_path, "store", source=MIRROR)
    assert outcome.status == "failed" and outcome.error == "source_error", outcome
    assert "hflambda mirror classify" in (outcome.reason or "") and f"{fake_hub.rev_b}.mirror.json" in (
        outcome.reason or ""
    )


def test_a_corrupted_mirror_object_is_refused(cli_env: Path, fake_hub: HubWorld, tmp_path: Path) -> None:
    import boto3

    run_mirror()
    key = f"mirror/tiny/{fake_hub.rev_b}/tokenizer.json"
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body[:-10] + b"0123456789")  # same size, other bytes
    outcome, _ = warm(fake_hub, tmp_path, "store", source=MIRROR)
    assert outcome.status == "failed" and outcome.error == "source_error", outcome
    assert "tokenizer.json" in (outcome.reason or "") and "do not match the mirror manifest" in (
        outcome.reason or ""
    )
    assert not (tmp_path / "store" / "classify").exists()

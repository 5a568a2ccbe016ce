"""The warmup image: export, quantize, parity and publish inside its own image, as Lambda runs it."""

from __future__ import annotations

import json

from tests.images.conftest import INIT_LIMIT_MS, Stage, WarmupRuns, model_statuses


def test_warmup_builds_and_publishes_every_model_inside_its_image(stage: Stage, warmed: WarmupRuns) -> None:
    run = warmed.scheduled
    assert run.status == 200 and run.function_error is None, run.raw[-3000:]
    assert run.payload["ok"] is True, json.dumps(run.payload, indent=1)[-3000:]
    assert model_statuses(run) == {"embed": "published", "embed-int8": "published"}
    for model in run.payload["models"]:
        # parity against the source model was measured in the image, and passed
        assert model["parity"]["min_cosine"] >= 0.95, model
    for alias in ("embed", "embed-int8"):
        current = (stage.store / alias / "CURRENT").read_text().strip()
        manifest = json.loads((stage.store / alias / current / "manifest.json").read_text())
        assert manifest["files"], manifest
        # written by the access point's POSIX user, as EFS would record it
        assert (
            f"{(stage.store / alias / current).stat().st_uid}:{(stage.store / alias / current).stat().st_gid}"
            == stage.user
        )


def test_the_after_deploy_trigger_finds_everything_current(warmed: WarmupRuns) -> None:
    run = warmed.after_deploy
    assert run.status == 200 and run.function_error is None, run.raw[-3000:]
    assert run.payload["ok"] is True
    assert set(model_statuses(run).values()) == {"current"}, model_statuses(run)


def test_warmup_init_is_within_lambdas_limit(warmed: WarmupRuns) -> None:
    assert warmed.init_ms is not None, warmed.logs[-2000:]
    assert warmed.init_ms < INIT_LIMIT_MS * 0.8

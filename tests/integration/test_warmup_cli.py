"""`hflambda warmup` with only HFLAMBDA_MODEL_STORE set warms the default registry offline;
a second run reports every model as already current and reads nothing from the source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.models import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_cli(store: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFLAMBDA_")}
    env["HFLAMBDA_MODEL_STORE"] = str(store)
    out = subprocess.run(
        [sys.executable, "-m", "hflambda.cli", "warmup", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout))


def test_warmup_then_current(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = run_cli(store)
    statuses = {m["alias"]: m["status"] for m in first["models"]}  # type: ignore[index,union-attr]
    assert statuses == {
        "embed": "published",
        "embed-int8": "published",
        "classify": "published",
        "chat": "published",
    }
    for alias in statuses:
        current = (store / alias / "CURRENT").read_text().strip()
        assert (store / alias / current / "manifest.json").is_file()
    second = run_cli(store)
    assert {m["alias"]: m["status"] for m in second["models"]} == dict.fromkeys(statuses, "current")  # type: ignore[index,union-attr]

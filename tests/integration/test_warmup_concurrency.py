"""Two warmup processes on one store: one writes, the other skips; one good revision results,
fetched from the Hub once. (The children find the fake Hub through huggingface_hub's own
``HF_ENDPOINT`` variable, not the hflambda setting.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hflambda.store import ModelStore
from tests.fixtures.hub import HubWorld, child_env, classifier, hub_registry
from tests.fixtures.models import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def result_of(output: str) -> dict[str, object]:
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_two_processes_one_writer(fake_hub: HubWorld, tmp_path: Path) -> None:
    store = tmp_path / "store"
    registry = hub_registry(tmp_path / "models.toml", {"classify": classifier(fake_hub.rev_b)})
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # a slow weights download keeps the winner inside its lock while the other arrives
    fake_hub.hub.inject("delay", route="get", file="model.safetensors", delay=1.0, times=10)
    # the endpoint comes from huggingface_hub's own HF_ENDPOINT variable here (no hf_endpoint setting)
    command = [
        sys.executable,
        "-m",
        "tests.fakes.warmup_child",
        str(registry),
        str(store),
        "-",
        "none",
        "--barrier",
        str(barrier),
    ]
    children = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env(HF_ENDPOINT=fake_hub.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 240
        while len(list(barrier.glob("ready-*"))) < 2:
            assert time.monotonic() < deadline, "children never got ready"
            assert all(c.poll() is None for c in children), [c.communicate() for c in children]
            time.sleep(0.05)
        (barrier / "go").write_text("")
        outputs = [c.communicate(timeout=240) for c in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert all(c.returncode == 0 for c in children), [err[-2000:] for _, err in outputs]
    results = [result_of(out) for out, _ in outputs]
    statuses = sorted(r["models"][0]["status"] for r in results)  # type: ignore[index]
    assert statuses in (["locked", "published"], ["current", "published"]), results
    loser = next(r["models"][0] for r in results if r["models"][0]["status"] != "published")  # type: ignore[index]
    if loser["status"] == "locked":
        assert "another warmup" in loser["reason"]

    assert fake_hub.hub.count("get", file="model.safetensors") == 1  # fetched once
    live = ModelStore(store).resolve("classify", verify_hashes=True)
    assert live.revision == fake_hub.rev_b
    assert [p.name for p in (store / "classify").iterdir() if p.is_dir()] == [fake_hub.rev_b]
    assert not list((store / ".staging").iterdir())
    assert not (store / ".locks" / "classify.lock").exists()

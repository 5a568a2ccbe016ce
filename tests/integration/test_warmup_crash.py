"""A warmup SIGKILLed at any point leaves a complete, verified revision live; the next run
cleans up and finishes; a reader polling the store meanwhile never sees anything else.

Each case: ``classify`` is live at revision A; a child process warms revision B from the
fake Hub and kills itself at one phase (tests/fakes/warmup_child.py); a reader thread
resolves the alias with full sha256 verification in a loop throughout, including the
recovery run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hflambda.registry import load_registry
from hflambda.store import ModelStore
from hflambda.warmup import run_warmup
from tests.fixtures.hub import (
    HubWorld,
    child_env,
    classifier,
    copy_store,
    fast_retry,
    hub_registry,
    hub_settings,
)
from tests.fixtures.models import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHASES = ["download", "export", "manifest", "rename", "pointer"]


class Reader(threading.Thread):
    """Resolves ``classify`` (sizes + sha256 every time) until stopped; records what it saw."""

    def __init__(self, store: Path) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.stop = threading.Event()
        self.seen: set[str] = set()
        self.errors: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                model = ModelStore(self.store).resolve("classify", verify_hashes=True)
                self.seen.add(model.revision)
                self.reads += 1
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_then_recover(phase: str, fake_hub: HubWorld, hub_store_a: Path, tmp_path: Path) -> None:
    store = copy_store(hub_store_a, tmp_path / "store")
    registry = hub_registry(tmp_path / "models.toml", {"classify": classifier(fake_hub.rev_b)})
    reader = Reader(store)
    reader.start()
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.fakes.warmup_child",
                str(registry),
                str(store),
                fake_hub.url,
                phase,
            ],
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert child.returncode == -signal.SIGKILL, (
            f"the child did not die at {phase}: {child.returncode}\n{child.stderr[-3000:]}"
        )

        # killed before the CURRENT swap: A is still live and complete
        assert ModelStore(store).resolve("classify", verify_hashes=True).revision == fake_hub.rev_a
        assert list((store / ".staging").glob("classify.*")), (
            "the crash should have left staging folders behind"
        )
        if phase in ("rename", "pointer"):  # moved into place complete, but never made live
            assert (store / "classify" / fake_hub.rev_b / "manifest.json").is_file()
        if phase == "pointer":  # the new pointer was written to its temp file only
            assert list((store / "classify").glob(".CURRENT.*.tmp"))
        assert (store / ".locks" / "classify.lock").exists()  # the dead writer's lock

        fake_hub.hub.reset()
        settings = hub_settings(store, registry, fake_hub)
        result = run_warmup(
            load_registry(registry), ModelStore(store), settings, source_options={"retry": fast_retry()}
        )
    finally:
        reader.finish()

    outcome = result.models[0]
    assert outcome.status == "published", outcome
    live = ModelStore(store).resolve("classify", verify_hashes=True)
    assert live.revision == fake_hub.rev_b
    if phase in ("rename", "pointer"):
        # the complete directory was verified and made live: nothing fetched again
        assert fake_hub.hub.count() == 0 and "re-activated" in (outcome.reason or "")
    else:
        assert fake_hub.hub.count("info") >= 1
    assert not list((store / ".staging").iterdir())
    assert not list((store / "classify").glob(".CURRENT.*.tmp"))
    assert sorted(p.name for p in (store / "classify").iterdir() if p.is_dir()) == sorted(
        [fake_hub.rev_a, fake_hub.rev_b]
    )
    assert not (store / ".locks" / "classify.lock").exists()

    assert reader.reads > 0
    assert reader.errors == [], reader.errors[:5]
    assert reader.seen <= {fake_hub.rev_a, fake_hub.rev_b}

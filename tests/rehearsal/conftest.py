"""The rehearsal tier (``make rehearse-test``): the synthesized stack run locally.

``assembly`` synthesizes the app once per session into ``build/rehearsal-test/cdk.out`` with
the context a browser-facing deployment has (``cors_allow_origins``,
``auth_authorized_parties``), a short index timeout with one receive before the DLQ so a
poison record reaches the DLQ in about a minute instead of five visibility timeouts of 12 min,
and the stand-in registry (:func:`rehearsal.synth.standin_registry`). Everything else is the default
deployment. It is re-synthesized only when stale.

``rehearsal`` runs that assembly with the real images under the RIE (``containers``), from an
empty store (a first deploy), and waits for the after-deploy warmup.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_ORIGIN = "https://app.example.com"
TIER = REPO_ROOT / "build" / "rehearsal-test"
CONTEXT: dict[str, Any] = {
    "cors_allow_origins": APP_ORIGIN,
    "auth_authorized_parties": APP_ORIGIN,
    "index_timeout_s": 10,
    "index_max_receive_count": 1,
}
WARMUP_TIMEOUT_S = 1500


@pytest.fixture(scope="session")
def assembly() -> Path:
    """The cloud assembly the tier rehearses (synthesized when missing or stale)."""
    from rehearsal.synth import prepare

    return prepare(TIER / "cdk.out", CONTEXT)


@pytest.fixture(scope="session")
def rehearsal(assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The stack with the three real images, warmed by its after-deploy trigger."""
    from rehearsal.stack import Rehearsal, RehearsalConfig

    lines: list[str] = []
    config = RehearsalConfig(
        cdk_out=assembly, state=tmp_path_factory.mktemp("rehearsal"), runtime="containers"
    )
    stack = Rehearsal(config, say=lines.append)
    stack.start()
    try:
        after_deploy = [r for r in stack.async_records if r.source == "after-deploy"]
        assert after_deploy, "the template declares no after-deploy trigger"
        stack.wait_for(after_deploy, WARMUP_TIMEOUT_S)
        stack.lines = lines
        yield stack
    finally:
        stack.stop()

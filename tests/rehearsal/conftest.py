"""The rehearsal tier (``make rehearse-test``): the synthesized stack run locally.

``assembly`` synthesizes the app once per session into ``build/rehearsal-test/cdk.out`` with
the context a browser-facing deployment has (``cors_allow_origins``,
``auth_authorized_parties``), a short index timeout with one receive before the DLQ so a
poison record reaches the DLQ in about a minute instead of five visibility timeouts of 12 min,
and the tier's registry (:func:`write_tier_registry`). Everything else is the default
deployment. It is re-synthesized only when stale.

``rehearsal`` runs that assembly with the real images under the RIE (``containers``), from an
empty store (a first deploy), and waits for the after-deploy warmup.
"""

from __future__ import annotations

import json
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
REGISTRY = TIER / "models.toml"
CONTEXT: dict[str, Any] = {
    "cors_allow_origins": APP_ORIGIN,
    "auth_authorized_parties": APP_ORIGIN,
    "index_timeout_s": 10,
    "index_max_receive_count": 1,
    "registry": REGISTRY.relative_to(REPO_ROOT).as_posix(),
}
WARMUP_TIMEOUT_S = 1500


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_tier_registry(source: Path = REPO_ROOT / "models.toml", dest: Path = REGISTRY) -> Path:
    """models.toml, except that a generation model gets its local profile's ``builder_options``.

    The Hub stand-in serves each alias with its local-profile model (rehearsal.hub): for chat
    that is SmolLM2-135M, whose int4 export agrees with transformers only with the local
    profile's block size (16; at the default 32 its logits cosine is 0.52, under parity's 0.95).
    Everything else is the deployed registry as it is.
    """
    import tomllib

    data = tomllib.loads(source.read_text())
    models: dict[str, dict[str, Any]] = data.get("models", {})
    local: dict[str, dict[str, Any]] = data.get("profiles", {}).get("local", {})
    for alias, table in models.items():
        if table.get("task") == "text-generation" and "builder_options" in local.get(alias, {}):
            table["builder_options"] = local[alias]["builder_options"]
    lines = [f"# Generated from {source.name} by tests/rehearsal/conftest.py (the rehearsal tier's registry)."]
    for alias, table in models.items():
        lines += ["", f"[models.{alias}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for profile, tables in data.get("profiles", {}).items():
        for alias, table in tables.items():
            lines += ["", f"[profiles.{profile}.{alias}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    text = "\n".join(lines) + "\n"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.read_text() != text:
        dest.write_text(text)
    return dest


def _synthesize(outdir: Path) -> Path:
    from rehearsal.synth import is_stale, synthesize

    write_tier_registry()
    recorded = outdir / "rehearsal-context.json"
    same = recorded.is_file() and json.loads(recorded.read_text()) == CONTEXT
    if not same or is_stale(outdir):
        synthesize(outdir, CONTEXT)
        recorded.write_text(json.dumps(CONTEXT))
    return outdir


@pytest.fixture(scope="session")
def assembly() -> Path:
    """The cloud assembly the tier rehearses (synthesized when missing or stale)."""
    return _synthesize(TIER / "cdk.out")


@pytest.fixture(scope="session")
def rehearsal(assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The stack with the three real images, warmed by its after-deploy trigger."""
    from rehearsal.stack import Rehearsal, RehearsalConfig

    lines: list[str] = []
    config = RehearsalConfig(cdk_out=assembly, state=tmp_path_factory.mktemp("rehearsal"), runtime="containers")
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

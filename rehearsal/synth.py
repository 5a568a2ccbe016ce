"""Synthesize the cloud assembly the rehearsal reads, when it is missing or older than its inputs.

:func:`prepare` is what ``make rehearse`` and the test tier run: the app as ``cdk deploy``
synthesizes it, with one input changed: the registry is :func:`standin_registry` (models.toml
with the chat model's local-profile int4 block size), because the Hub stand-in serves the
local profile's SmolLM2 for it, which fails int4 parity at the deployed block size of 32.

``cdk.out`` is stale when any file it is synthesized from (``cdk/``, ``cdk.json``, the
registry, the function and library code the images copy) is newer than its
``manifest.json``. Synthesis is the CDK app itself (``cdk.app.build_app``) without cdk-nag
(``make synth`` runs the checks); the context given here is merged over ``cdk.json``'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["REHEARSAL_OUT", "is_stale", "prepare", "standin_registry", "synthesize"]

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUTS = ("cdk", "cdk.json", "models.toml", "functions", "layers/hflambda", "requirements")
REHEARSAL_OUT = REPO_ROOT / "build" / "rehearsal" / "cdk.out"


def _newest(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for child in path.rglob("*"):
                if child.is_file() and "__pycache__" not in child.parts:
                    newest = max(newest, child.stat().st_mtime)
    return newest


def is_stale(outdir: Path) -> bool:
    manifest = outdir / "manifest.json"
    if not manifest.is_file():
        return True
    return _newest([REPO_ROOT / p for p in INPUTS]) > manifest.stat().st_mtime


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Path:
    """Synthesize every stack into ``outdir`` (created); returns it."""
    from cdk.app import build_app

    outdir.mkdir(parents=True, exist_ok=True)
    build_app(context, outdir=outdir, with_nag=False).synth()
    return outdir


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def standin_registry(dest: Path, source: Path = REPO_ROOT / "models.toml") -> Path:
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
    lines = [
        f"# Generated from {source.name} by rehearsal/synth.py (the registry the rehearsal deploys with the Hub stand-in)."
    ]
    for alias, table in models.items():
        lines += ["", f"[models.{alias}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for profile, tables in data.get("profiles", {}).items():
        for alias, table in tables.items():
            lines += [
                "",
                f"[profiles.{profile}.{alias}]",
                *(f"{k} = {_toml_value(v)}" for k, v in table.items()),
            ]
    text = "\n".join(lines) + "\n"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.read_text() != text:
        dest.write_text(text)
    return dest


def prepare(outdir: Path = REHEARSAL_OUT, context: dict[str, Any] | None = None) -> Path:
    """``outdir`` synthesized (when stale or its context changed) with the stand-in registry."""
    registry = standin_registry(outdir.parent / "models.toml")
    merged = {**(context or {}), "registry": registry.relative_to(REPO_ROOT).as_posix()}
    recorded = outdir / "rehearsal-context.json"
    same = recorded.is_file() and json.loads(recorded.read_text()) == merged
    if not same or is_stale(outdir) or registry.stat().st_mtime > (outdir / "manifest.json").stat().st_mtime:
        synthesize(outdir, merged)
        recorded.write_text(json.dumps(merged))
    return outdir

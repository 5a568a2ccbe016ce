"""Synthesize the cloud assembly the rehearsal reads, when it is missing or older than its inputs.

``cdk.out`` is stale when any file it is synthesized from (``cdk/``, ``cdk.json``, the
registry, the function and library code the images copy) is newer than its
``manifest.json``. Synthesis is the CDK app itself (``cdk.app.build_app``) without cdk-nag
(``make synth`` runs the checks); the context given here is merged over ``cdk.json``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["is_stale", "synthesize"]

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUTS = ("cdk", "cdk.json", "models.toml", "functions", "layers/hflambda", "requirements")


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

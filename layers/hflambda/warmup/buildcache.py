"""A content-keyed cache for folders warmup builds on a developer machine.

Converting a packaged GGUF (``dist://``) or training a model (``train://``) is deterministic
for a given input: the folder is built once per key into ``$XDG_CACHE_HOME/hflambda/<kind>/<key>``
(``~/.cache/hflambda`` by default) and reused by later warmups and test sessions. Keys include
the input's sha256 and the converter/recipe version, so a changed input or code never reuses a
stale folder. Builds land in a temporary sibling and are renamed into place (concurrent
builders: the first rename wins, the others discard theirs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["cache_root", "cached_folder"]

DONE = ".complete"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/hflambda`` (default ``~/.cache/hflambda``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hflambda"


def cached_folder(kind: str, key: str, build: Callable[[Path], Path]) -> tuple[Path, bool]:
    """The cached folder for ``key`` (building it with ``build(tmp) -> model folder`` when absent).

    Returns (folder, hit). ``build`` gets an empty folder and returns the model folder inside it.
    """
    root = cache_root() / kind
    final = root / key
    if (final / DONE).is_file():
        return final / (final / DONE).read_text(encoding="utf-8").strip(), True
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        inner = build(tmp).relative_to(tmp)
        (tmp / DONE).write_text(str(inner), encoding="utf-8")  # the model folder, relative
        try:
            os.rename(tmp, final)
        except OSError:  # another builder finished first (or a stale incomplete folder)
            if not (final / DONE).is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final / (final / DONE).read_text(encoding="utf-8").strip(), False

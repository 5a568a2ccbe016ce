"""The source contract every backend implements, and the types the backends share.

A source resolves the revision without downloading (so a current model costs nothing) and
fetches the files a compiler needs into a local folder. The backends (one module each in
this package) import from here; the factory (:func:`hflambda.warmup.sources.open_source`)
imports them lazily, so nothing here depends on any backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hflambda.registry import ModelSpec
from hflambda.store import FileEntry

__all__ = ["ALLOW_PATTERNS", "FetchedSource", "ProgressCallback", "Source"]

# called with (bytes fetched and verified so far, total bytes of the revision)
ProgressCallback = Callable[[int, int], None]

# what exporters read; weights in safetensors preferred
ALLOW_PATTERNS = [
    "*.json",
    "*.txt",
    "*.model",
    "*.safetensors",
    "*.py",
    "1_Pooling/*",
    "*.jinja",
]


@dataclass(frozen=True)
class FetchedSource:
    """A local folder holding the source files of one pinned revision."""

    path: Path
    revision: str
    bytes_downloaded: int = 0
    # the source files as fetched and verified (name -> size, sha256); empty for local folders
    files: dict[str, FileEntry] = field(default_factory=dict)
    # how the folder was made from what was fetched (e.g. a GGUF conversion); lands in the manifest's info
    info: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """Contract every source backend implements."""

    def revision(self, spec: ModelSpec) -> str:
        """The revision that would be fetched, resolved without downloading files."""
        ...

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Make the files of the pinned revision available locally (under ``workdir`` if copied)."""
        ...

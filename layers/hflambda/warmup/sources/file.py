"""``file://`` sources: a model folder on local disk, used in place (read-only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hflambda.errors import SourceError
from hflambda.registry import ModelSpec
from hflambda.warmup.sources.base import FetchedSource

__all__ = ["LocalFolderSource"]


class LocalFolderSource:
    """``file:///abs/path`` or ``file://relative/path`` (relative to the registry file)."""

    def __init__(self, uri: str, base: Path | None = None) -> None:
        raw = uri.removeprefix("file://")
        path = Path(raw)
        if not path.is_absolute() and base is not None:
            path = base / path
        self.root = path

    def _check(self) -> Path:
        if not self.root.is_dir():
            raise SourceError(f"source folder {self.root} does not exist", path=str(self.root))
        if not (self.root / "config.json").is_file():
            raise SourceError(
                f"source folder {self.root} has no config.json; is it a model folder?", path=str(self.root)
            )
        return self.root

    def revision(self, spec: ModelSpec) -> str:
        """The registry's revision when pinned, else a fingerprint of names, sizes and mtimes."""
        if spec.revision:
            return spec.revision
        root = self._check()
        digest = hashlib.sha256()
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return "local-" + digest.hexdigest()[:32]

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Local files are used in place (read-only)."""
        return FetchedSource(path=self._check(), revision=self.revision(spec))

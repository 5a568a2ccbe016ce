"""Vector store: contract in ``base``, LanceDB backend in ``lance``, factory here.

``open_vector_store(settings)`` opens the store at ``HFLAMBDA_VECTOR_URI`` (a local folder, or
``s3://bucket/prefix`` with credentials, region and endpoint as boto3 resolves them);
``get_vector_store()`` is the process-wide instance predict and index share.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from hflambda.settings import Settings, get_settings
from hflambda.vectors.base import (
    ApplyResult,
    Chunk,
    DeleteOp,
    DocKey,
    FailureRecord,
    MaintenanceReport,
    MetadataFilter,
    Plan,
    SearchHit,
    StoredDocument,
    UpsertOp,
    VectorSpace,
    VectorStore,
    WriteOp,
)

__all__ = [
    "ApplyResult",
    "Chunk",
    "DeleteOp",
    "DocKey",
    "FailureRecord",
    "MaintenanceReport",
    "MetadataFilter",
    "Plan",
    "SearchHit",
    "StoredDocument",
    "UpsertOp",
    "VectorSpace",
    "VectorStore",
    "WriteOp",
    "get_vector_store",
    "maintain_vectors",
    "open_vector_store",
]


def open_vector_store(settings: Settings | None = None, *, uri: str | None = None) -> VectorStore:
    """A new store for ``uri`` (default: ``settings.vector_uri``), configured from ``settings``."""
    settings = settings or get_settings()
    return _open(uri or settings.vector_uri, *_tuning(settings))


def _tuning(settings: Settings) -> tuple[int, int, int]:
    return settings.vector_index_min_rows, settings.vector_keep_versions_minutes, settings.vector_optimize_every


def _open(uri: str, index_min_rows: int, keep_minutes: int, optimize_every: int) -> VectorStore:
    from hflambda.vectors.lance import LanceVectorStore, s3_storage_options

    return LanceVectorStore(
        uri,
        storage_options=s3_storage_options() if uri.startswith("s3://") else None,
        index_min_rows=index_min_rows,
        keep_versions=timedelta(minutes=keep_minutes),
        optimize_every=optimize_every,
    )


@lru_cache(maxsize=4)
def _shared(uri: str, index_min_rows: int, keep_minutes: int, optimize_every: int) -> VectorStore:
    return _open(uri, index_min_rows, keep_minutes, optimize_every)


def get_vector_store(settings: Settings | None = None) -> VectorStore:
    """The process-wide store for the current settings (one per configuration)."""
    settings = settings or get_settings()
    return _shared(settings.vector_uri, *_tuning(settings))


def maintain_vectors(settings: Settings | None = None) -> MaintenanceReport:
    """One maintenance pass over the configured store (for a schedule or ``hflambda vectors maintain``)."""
    return open_vector_store(settings or get_settings()).maintain()

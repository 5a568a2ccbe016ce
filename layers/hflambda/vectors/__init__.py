"""Vector store: contract in ``base``, backends in ``lance`` (local) and ``aws``, factory here.

``HFLAMBDA_VECTOR_BACKEND`` picks the backend: ``local`` (the default: LanceDB in the folder
``HFLAMBDA_VECTOR_URI``, for ``hflambda dev`` and tests) or ``aws`` (S3 Vectors index
``HFLAMBDA_VECTOR_BUCKET``/``HFLAMBDA_VECTOR_INDEX`` + DynamoDB table ``HFLAMBDA_VECTOR_TABLE``;
boto3 only, so the function images carry no LanceDB or pyarrow). ``open_vector_store(settings)``
opens a new store; ``get_vector_store()`` is the process-wide instance predict and index share.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from hflambda.errors import HflambdaError
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
    "VectorStoreNotConfigured",
    "WriteOp",
    "get_vector_store",
    "maintain_vectors",
    "open_vector_store",
]


class VectorStoreNotConfigured(HflambdaError):
    """The aws vector backend is selected without its bucket, index or table."""

    status = 503
    code = "vector_store_not_configured"


def open_vector_store(settings: Settings | None = None, *, uri: str | None = None) -> VectorStore:
    """A new store for ``settings`` (``uri`` overrides the local folder)."""
    settings = settings or get_settings()
    if settings.vector_backend == "aws":
        return _open_aws(settings.vector_bucket, settings.vector_index, settings.vector_table)
    return _open_local(uri or settings.vector_uri, *_tuning(settings))


def _tuning(settings: Settings) -> tuple[int, int, int]:
    return settings.vector_index_min_rows, settings.vector_keep_versions_minutes, settings.vector_optimize_every


def _open_aws(bucket: str | None, index: str | None, table: str | None) -> VectorStore:
    if not (index and table and (bucket or index.startswith("arn:"))):
        raise VectorStoreNotConfigured(
            "HFLAMBDA_VECTOR_BACKEND=aws needs HFLAMBDA_VECTOR_TABLE and HFLAMBDA_VECTOR_INDEX "
            "(an index ARN, or an index name with HFLAMBDA_VECTOR_BUCKET)"
        )
    from hflambda.vectors.aws import S3VectorsStore

    return S3VectorsStore(bucket=bucket, index=index, table=table)


def _open_local(uri: str, index_min_rows: int, keep_minutes: int, optimize_every: int) -> VectorStore:
    from hflambda.vectors.lance import LanceVectorStore

    return LanceVectorStore(
        uri,
        index_min_rows=index_min_rows,
        keep_versions=timedelta(minutes=keep_minutes),
        optimize_every=optimize_every,
    )


@lru_cache(maxsize=4)
def _shared(key: tuple[object, ...]) -> VectorStore:
    backend, *rest = key
    if backend == "aws":
        return _open_aws(*rest)  # type: ignore[arg-type]
    return _open_local(*rest)  # type: ignore[arg-type]


def get_vector_store(settings: Settings | None = None) -> VectorStore:
    """The process-wide store for the current settings (one per configuration)."""
    settings = settings or get_settings()
    if settings.vector_backend == "aws":
        return _shared(("aws", settings.vector_bucket, settings.vector_index, settings.vector_table))
    return _shared(("local", settings.vector_uri, *_tuning(settings)))


def maintain_vectors(settings: Settings | None = None) -> MaintenanceReport:
    """One maintenance pass over the configured store (for a schedule or ``hflambda vectors maintain``)."""
    return open_vector_store(settings or get_settings()).maintain()

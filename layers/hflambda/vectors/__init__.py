"""Vector store: contract in ``base``, its types in ``types``, the DLQ failure ledger's protocol
in ``ledger``, backends in ``lance`` (local) and ``aws`` (each also a ledger), factory here.

``HFLAMBDA_VECTOR_BACKEND`` picks the backend: ``local`` (the default: LanceDB in the folder
``HFLAMBDA_VECTOR_URI``, for ``hflambda dev`` and tests) or ``aws`` (S3 Vectors index
``HFLAMBDA_VECTOR_BUCKET``/``HFLAMBDA_VECTOR_INDEX`` + DynamoDB table ``HFLAMBDA_VECTOR_TABLE``;
boto3 only, so the function images carry no LanceDB or pyarrow). ``open_vector_store(settings)``
opens a new store; ``get_vector_store()`` is the process-wide instance predict and index share.
``open_failure_ledger`` / ``get_failure_ledger`` give the same backends typed as the
``FailureLedger`` only, for callers that just record or read failure reasons.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, TypeAlias

from hflambda.errors import VectorStoreNotConfigured
from hflambda.settings import Settings, get_settings
from hflambda.vectors.base import VectorStore
from hflambda.vectors.ledger import FailureLedger, FailureRecord
from hflambda.vectors.types import (
    ApplyResult,
    Chunk,
    DeleteOp,
    DocKey,
    MaintenanceReport,
    MetadataFilter,
    Plan,
    SearchHit,
    StoredDocument,
    UpsertOp,
    VectorSpace,
    WriteOp,
)

if TYPE_CHECKING:
    from hflambda.vectors.aws import S3VectorsStore
    from hflambda.vectors.lance import LanceVectorStore

__all__ = [
    "ApplyResult",
    "Chunk",
    "DeleteOp",
    "DocKey",
    "FailureLedger",
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
    "get_failure_ledger",
    "get_vector_store",
    "maintain_vectors",
    "open_failure_ledger",
    "open_vector_store",
]

_Backend: TypeAlias = "S3VectorsStore | LanceVectorStore"
"""Every backend is both a ``VectorStore`` and a ``FailureLedger``."""


def open_vector_store(settings: Settings | None = None, *, uri: str | None = None) -> VectorStore:
    """A new store for ``settings`` (``uri`` overrides the local folder)."""
    return _open(settings or get_settings(), uri)


def open_failure_ledger(settings: Settings | None = None) -> FailureLedger:
    """A new failure ledger for ``settings``: the configured backend, seen as its ledger only."""
    return _open(settings or get_settings(), None)


def _open(settings: Settings, uri: str | None) -> _Backend:
    if settings.vector_backend == "aws":
        return _open_aws(settings.vector_bucket, settings.vector_index, settings.vector_table)
    return _open_local(uri or settings.vector_uri, *_tuning(settings))


def _tuning(settings: Settings) -> tuple[int, int, int]:
    return (
        settings.vector_index_min_rows,
        settings.vector_keep_versions_minutes,
        settings.vector_optimize_every,
    )


def _open_aws(bucket: str | None, index: str | None, table: str | None) -> S3VectorsStore:
    if not (index and table and (bucket or index.startswith("arn:"))):
        raise VectorStoreNotConfigured(
            "HFLAMBDA_VECTOR_BACKEND=aws needs HFLAMBDA_VECTOR_TABLE and HFLAMBDA_VECTOR_INDEX "
            "(an index ARN, or an index name with HFLAMBDA_VECTOR_BUCKET)"
        )
    from hflambda.vectors.aws import S3VectorsStore

    return S3VectorsStore(bucket=bucket, index=index, table=table)


def _open_local(uri: str, index_min_rows: int, keep_minutes: int, optimize_every: int) -> LanceVectorStore:
    from hflambda.vectors.lance import LanceVectorStore

    return LanceVectorStore(
        uri,
        index_min_rows=index_min_rows,
        keep_versions=timedelta(minutes=keep_minutes),
        optimize_every=optimize_every,
    )


@lru_cache(maxsize=4)
def _shared(key: tuple[object, ...]) -> _Backend:
    backend, *rest = key
    if backend == "aws":
        return _open_aws(*rest)  # type: ignore[arg-type]
    return _open_local(*rest)  # type: ignore[arg-type]


def get_vector_store(settings: Settings | None = None) -> VectorStore:
    """The process-wide store for the current settings (one per configuration)."""
    return _get(settings or get_settings())


def get_failure_ledger(settings: Settings | None = None) -> FailureLedger:
    """The process-wide store of ``get_vector_store``, seen as its failure ledger only."""
    return _get(settings or get_settings())


def _get(settings: Settings) -> _Backend:
    if settings.vector_backend == "aws":
        return _shared(("aws", settings.vector_bucket, settings.vector_index, settings.vector_table))
    return _shared(("local", settings.vector_uri, *_tuning(settings)))


def maintain_vectors(settings: Settings | None = None) -> MaintenanceReport:
    """One maintenance pass over the configured store (for a schedule or ``hflambda vectors maintain``)."""
    return open_vector_store(settings or get_settings()).maintain()

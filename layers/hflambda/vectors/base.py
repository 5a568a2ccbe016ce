"""The vector-store contract shared by the index function (writes) and predict's search (reads).

A store keeps, per ``(user_id, document_id)``:

- a **catalogue row** with the document's newest version key (see ``hflambda.messages.
  version_key``), its full text and metadata, or a *tombstone* (``deleted``) when the newest
  operation was a delete. The catalogue decides every newest-wins question: a message whose
  version is older than the catalogue's is *superseded* and changes nothing, so a late
  upsert never resurrects a deleted document and a late update never rolls one back.
- **chunk rows** (one per token window) carrying the vector, the chunk text and character
  offsets, and the model alias and revision that produced the vector. Search only ever
  compares vectors of one :class:`VectorSpace` (the live revision of the embedding model).

Every search is scoped to one ``user_id``; there is no unscoped search.

This module holds the contract (``VectorStore``) and the filter-term encoding every backend
shares; the records, hits, filters and results it speaks in are in ``hflambda.vectors.types``,
and the DLQ failure ledger both backends also keep is its own protocol,
``hflambda.vectors.ledger.FailureLedger``.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hflambda.errors import BadInput
from hflambda.vectors.types import (
    ApplyResult,
    MaintenanceReport,
    MetadataFilter,
    Plan,
    Scalar,
    SearchHit,
    StoredDocument,
    UpsertOp,
    VectorSpace,
    WriteOp,
)

__all__ = ["FilterInvalid", "VectorStore", "filter_tags", "metadata_tags"]


def _canonical(value: Scalar) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _tag(key: str, value: Scalar) -> str:
    return f"{key}={_canonical(value)}"


def metadata_tags(metadata: Mapping[str, Any]) -> list[str]:
    """Filterable ``key=<json value>`` terms of a metadata object.

    Scalars give one term; a list gives one term per scalar element; nested objects are
    stored but not filterable. ``1`` and ``1.0`` give the same term.
    """
    tags: set[str] = set()
    for key, value in metadata.items():
        if isinstance(value, list):
            tags.update(_tag(key, item) for item in value if not isinstance(item, dict | list))
        elif not isinstance(value, dict):
            tags.add(_tag(key, value))
    return sorted(tags)


def filter_tags(flt: MetadataFilter | None) -> list[list[str]]:
    """A filter as a conjunction of disjunctions of terms (every inner list: any of)."""
    clauses: list[list[str]] = []
    for key, value in (flt or {}).items():
        if isinstance(value, list | tuple):
            if not value:
                raise FilterInvalid(
                    f"filter.{key} is an empty list: name at least one value", field=f"filter.{key}"
                )
            clauses.append([_tag(key, item) for item in value])
        elif isinstance(value, dict):
            raise FilterInvalid(f"filter.{key} must be a value or a list of values", field=f"filter.{key}")
        else:
            clauses.append([_tag(key, value)])  # type: ignore[arg-type]
    return clauses


class FilterInvalid(BadInput):
    """A search filter no store can evaluate (400, never a 'retry later')."""


class VectorStore(ABC):
    """Documents and their chunk vectors, newest-wins, per user."""

    uri: str

    @abstractmethod
    def plan(self, ops: Sequence[WriteOp], space: VectorSpace) -> Plan:
        """Ops that need no work: ``superseded`` (a newer version is stored) or
        ``duplicate`` (this exact version is already indexed in ``space``). Advisory: lets the
        caller skip embedding; ``apply`` re-checks everything itself."""

    @abstractmethod
    def apply(self, ops: Sequence[WriteOp], space: VectorSpace, plan: Plan | None = None) -> ApplyResult:
        """Write a batch: upserts (with their chunks) and deletes, newest-wins per document.

        Idempotent (a redelivered op changes nothing) and safe under concurrent writers:
        whatever the interleaving, each document converges to the chunks of its newest
        version, or to none when that is a delete.
        """

    @abstractmethod
    def search(
        self,
        user_id: str,
        vector: np.ndarray,
        *,
        space: VectorSpace,
        top_k: int = 10,
        filter: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        """The ``top_k`` documents of ``user_id`` nearest to ``vector`` (cosine), one hit per
        document, using only vectors of ``space``."""

    @abstractmethod
    def get_document(self, user_id: str, document_id: str) -> StoredDocument | None:
        """The catalogue row of one document (tombstones included)."""

    @abstractmethod
    def count_chunks(self, space: VectorSpace, *, user_id: str | None = None) -> int:
        """Chunk rows of ``space`` (optionally of one user)."""

    @abstractmethod
    def stale_documents(self, space: VectorSpace, *, batch_size: int = 256) -> Iterator[list[StoredDocument]]:
        """Live documents without chunks in ``space`` (what ``reindex`` must embed), in pages."""

    @abstractmethod
    def reindex(self, ops: Sequence[UpsertOp], space: VectorSpace) -> ApplyResult:
        """Write chunks for the catalogue's current versions (no catalogue change)."""

    @abstractmethod
    def maintain(self, space: VectorSpace | None = None) -> MaintenanceReport:
        """Compaction, index creation/refresh, cleanup of old table versions and failures."""

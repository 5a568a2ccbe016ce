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
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import numpy as np

from hflambda.errors import BadInput

__all__ = [
    "ApplyResult",
    "Chunk",
    "DeleteOp",
    "DocKey",
    "FailureRecord",
    "FilterInvalid",
    "MaintenanceReport",
    "MetadataFilter",
    "Plan",
    "Scalar",
    "SearchHit",
    "Skip",
    "StoredDocument",
    "UpsertOp",
    "VectorSpace",
    "VectorStore",
    "WriteOp",
    "filter_tags",
    "metadata_tags",
]

DocKey: TypeAlias = tuple[str, str]
"""``(user_id, document_id)``."""

Scalar: TypeAlias = str | int | float | bool | None
MetadataFilter: TypeAlias = Mapping[str, Scalar | Sequence[Scalar]]
"""``{key: value}``: documents whose metadata ``key`` equals ``value`` (or, for a list
metadata value, contains it); a list filter value means any of them. Keys are ANDed."""

Skip: TypeAlias = Literal["superseded", "duplicate"]


class Plan(dict[DocKey, Skip]):
    """``plan``'s answer: the ops that need no work, by key (a dict), plus the backend's
    snapshot of what was stored, which ``apply`` may reuse instead of reading it again (a
    stale snapshot is safe: ``apply`` guards every write and settles afterwards)."""

    snapshot: Any = None


@dataclass(frozen=True)
class VectorSpace:
    """Which model produced a vector: registry alias, published revision, dimensions.

    ``revision`` is the model store's revision directory name (the pinned source revision,
    plus an export-settings suffix when one revision was exported two ways), so vectors of
    two different exports are never compared either.
    """

    alias: str
    revision: str
    dimensions: int

    @classmethod
    def of(cls, embedder: Any) -> VectorSpace:
        """The space an ``Embedder`` writes: its alias, published revision directory, size."""
        return cls(alias=embedder.alias, revision=embedder.model.path.name, dimensions=int(embedder.dimensions))


@dataclass(frozen=True)
class Chunk:
    """One token window of a document: its number, text, character span, and vector."""

    chunk: int
    text: str
    start: int
    end: int
    vector: np.ndarray


@dataclass(frozen=True)
class UpsertOp:
    """Write this version of a document (its chunks replace every older chunk)."""

    user_id: str
    document_id: str
    version: str
    ts: int
    text: str
    metadata: dict[str, Any]
    chunks: tuple[Chunk, ...] = ()
    deleted: Literal[False] = False

    @property
    def key(self) -> DocKey:
        """``(user_id, document_id)``."""
        return (self.user_id, self.document_id)


@dataclass(frozen=True)
class DeleteOp:
    """Delete a document: a tombstone at ``version`` plus removal of every chunk."""

    user_id: str
    document_id: str
    version: str
    ts: int
    deleted: Literal[True] = True

    @property
    def key(self) -> DocKey:
        """``(user_id, document_id)``."""
        return (self.user_id, self.document_id)


WriteOp: TypeAlias = UpsertOp | DeleteOp


@dataclass(frozen=True)
class StoredDocument:
    """A catalogue row: the newest known version of one document (or its tombstone)."""

    user_id: str
    document_id: str
    version: str
    ts: int
    deleted: bool
    text: str
    metadata: dict[str, Any]
    chunks: int
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> DocKey:
        """``(user_id, document_id)``."""
        return (self.user_id, self.document_id)


@dataclass
class ApplyResult:
    """What one ``apply`` did, per document key."""

    written: list[DocKey] = field(default_factory=list)
    deleted: list[DocKey] = field(default_factory=list)
    superseded: list[DocKey] = field(default_factory=list)
    chunks_written: int = 0
    repaired: int = 0
    failed: dict[DocKey, str] = field(default_factory=dict)
    """Documents this store could not take (the record fails alone, with the reason)."""


@dataclass(frozen=True)
class SearchHit:
    """One document in a search result, represented by its best-matching chunk."""

    document_id: str
    score: float
    chunk: int
    text: str
    start: int
    end: int
    metadata: dict[str, Any]
    ts: int


@dataclass(frozen=True)
class FailureRecord:
    """Why the index function failed one SQS message (kept for ``hflambda dlq list``)."""

    message_id: str
    reason: str
    receive_count: int
    source: str
    recorded_at: datetime


@dataclass
class MaintenanceReport:
    """What ``maintain`` did."""

    rows: dict[str, int] = field(default_factory=dict)
    indexes_created: list[str] = field(default_factory=list)
    optimized: list[str] = field(default_factory=list)
    failures_expired: int = 0
    seconds: float = 0.0


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
                raise FilterInvalid(f"filter.{key} is an empty list: name at least one value", field=f"filter.{key}")
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

    @abstractmethod
    def record_failures(self, failures: Iterable[FailureRecord]) -> None:
        """Keep why messages failed (best effort: never raises)."""

    @abstractmethod
    def failure_reasons(self, message_ids: Iterable[str]) -> dict[str, FailureRecord]:
        """The latest recorded failure of each message id that has one."""

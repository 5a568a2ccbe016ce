"""The vector store's types: document keys, write ops, stored rows, hits, filters, results.

The contract that reads and writes them (``VectorStore``) and the filter-term encoding every
backend shares are in ``hflambda.vectors.base``; the DLQ failure ledger's record is in
``hflambda.vectors.ledger``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import numpy as np

__all__ = [
    "ApplyResult",
    "Chunk",
    "DeleteOp",
    "DocKey",
    "MaintenanceReport",
    "MetadataFilter",
    "Plan",
    "Scalar",
    "SearchHit",
    "Skip",
    "StoredDocument",
    "UpsertOp",
    "VectorSpace",
    "WriteOp",
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
        return cls(
            alias=embedder.alias, revision=embedder.model.path.name, dimensions=int(embedder.dimensions)
        )


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


@dataclass
class MaintenanceReport:
    """What ``maintain`` did."""

    rows: dict[str, int] = field(default_factory=dict)
    indexes_created: list[str] = field(default_factory=list)
    optimized: list[str] = field(default_factory=list)
    failures_expired: int = 0
    seconds: float = 0.0

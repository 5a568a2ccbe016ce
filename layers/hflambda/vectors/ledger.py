"""The DLQ failure ledger: why the index function failed a message, kept for ``hflambda dlq list``.

Its own small protocol, apart from the vector-store contract (``hflambda.vectors.base``):
the index function records into it, the DLQ tooling (``hflambda.dlq``, the CLI) only reads
it, and neither needs a vector store for that. Both backends implement it next to their
documents, in the storage they already have (no extra table or service to deploy): the
local one in the LanceDB table ``index_failures`` (expired by ``maintain``), the AWS one as
DynamoDB items ``pk = "f#<message_id>"`` with a TTL. ``hflambda.vectors.get_failure_ledger``
and ``open_failure_ledger`` give the configured one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["FailureLedger", "FailureRecord"]


@dataclass(frozen=True)
class FailureRecord:
    """Why the index function failed one SQS message (kept for ``hflambda dlq list``)."""

    message_id: str
    reason: str
    receive_count: int
    source: str
    recorded_at: datetime


@runtime_checkable
class FailureLedger(Protocol):
    """Where failure reasons are recorded and looked up by SQS message id."""

    def record_failures(self, failures: Iterable[FailureRecord]) -> None:
        """Keep why messages failed (best effort: never raises)."""

    def failure_reasons(self, message_ids: Iterable[str]) -> dict[str, FailureRecord]:
        """The latest recorded failure of each message id that has one."""

"""Index a batch of queue messages: validate, chunk by tokens, embed per batch, one upsert.

The index function's handler hands every SQS record of an invocation to
:meth:`Indexer.index`, which answers with the records that failed and why. Per batch, not
per message:

1. every body is validated against the message contract (``hflambda.messages``); an invalid
   body is a failed record with its reason, never an exception;
2. per document only the newest message of the batch is kept (older ones are superseded
   and acknowledged); the store says which remaining ones are already superseded or
   indexed exactly so (redeliveries), and those are acknowledged without embedding;
3. upserts are chunked by tokens (``hflambda.chunking``; window and overlap from settings,
   clamped to the model's limit), all chunks of the batch are embedded in groups of ``index_embed_group``, and the
   batch is written with one ``VectorStore.apply``.

A model that is not warmed fails every record with that reason (SQS redelivers later);
nothing is acknowledged unprocessed. Failure reasons are logged with the SQS message id and
recorded in the failure ledger (``hflambda.vectors.ledger``; by default the vector store, which
keeps one) so ``hflambda dlq list`` can show them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from tokenizers import Tokenizer

from hflambda.chunking import TextChunk, TokenChunker
from hflambda.engines.base import Embedder
from hflambda.errors import HflambdaError, ModelNotReady
from hflambda.messages import DeleteMessage, MessageInvalid, UpsertMessage, now_ms, parse_message
from hflambda.settings import Settings
from hflambda.telemetry import MetricUnit, logger, metrics
from hflambda.vectors.base import VectorStore, metadata_tags
from hflambda.vectors.ledger import FailureLedger, FailureRecord
from hflambda.vectors.types import Chunk, DeleteOp, DocKey, Plan, UpsertOp, VectorSpace, WriteOp

__all__ = [
    "BatchOutcome",
    "IndexRecordFailed",
    "Indexer",
    "QueueRecord",
    "ReindexReport",
    "TokenizedEmbedder",
    "chunk_over_limits",
    "document_over_limits",
    "embed_chunked",
    "embed_documents",
    "vector_space",
]


@runtime_checkable
class TokenizedEmbedder(Embedder, Protocol):
    """An embedder that exposes its ``tokenizers.Tokenizer`` (for token chunking)."""

    tokenizer: Tokenizer


def vector_space(embedder: Embedder) -> VectorSpace:
    """The vector space an embedder writes: alias, published revision directory, dimensions."""
    return VectorSpace.of(embedder)


# --- batches ----------------------------------------------------------------------------


class IndexRecordFailed(Exception):
    """Raised for a failed record inside the batch processor, so it lands in batchItemFailures."""


@dataclass(frozen=True)
class QueueRecord:
    """What indexing needs of one SQS record."""

    message_id: str
    body: str
    sent_ts: int = field(default_factory=now_ms)
    receive_count: int = 1
    source: str = ""

    @classmethod
    def from_sqs(cls, record: dict) -> QueueRecord:  # type: ignore[type-arg]
        """From a Lambda SQS event record (``messageId``, ``body``, ``attributes``...)."""
        attributes = record.get("attributes") or {}
        sent = str(attributes.get("SentTimestamp") or "")
        count = str(attributes.get("ApproximateReceiveCount") or "1")
        return cls(
            message_id=str(record.get("messageId", "")),
            body=record.get("body") or "",
            sent_ts=int(sent) if sent.isdigit() else now_ms(),
            receive_count=int(count) if count.isdigit() else 1,
            source=str(record.get("eventSourceARN", "")),
        )


@dataclass
class BatchOutcome:
    """The result of one batch: failed message ids with reasons, and what was done."""

    failures: dict[str, str] = field(default_factory=dict)
    written: int = 0
    deleted: int = 0
    superseded: int = 0
    duplicates: int = 0
    deferred: int = 0
    chunks: int = 0
    embed_ms: float = 0.0
    store_ms: float = 0.0

    @property
    def succeeded(self) -> int:
        """Records acknowledged (written, deleted, superseded or duplicate)."""
        return self.written + self.deleted + self.superseded + self.duplicates


@dataclass
class ReindexReport:
    """What ``reindex`` did."""

    space: VectorSpace
    documents: int = 0
    chunks: int = 0
    superseded: int = 0
    failed: dict[DocKey, str] = field(default_factory=dict)


@dataclass
class _Pending:
    record: QueueRecord
    message: UpsertMessage | DeleteMessage
    op: WriteOp


EmbedderSource = Callable[[], TokenizedEmbedder]


class Indexer:
    """Turns batches of queue records into vector-store writes.

    Failure reasons go to ``ledger``; without one, to ``store`` when it keeps a ledger too
    (both backends do), else they are only logged.
    """

    def __init__(
        self,
        store: VectorStore,
        embedder: EmbedderSource,
        settings: Settings,
        *,
        ledger: FailureLedger | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.ledger = ledger if ledger is not None else store if isinstance(store, FailureLedger) else None
        self._chunkers: dict[int, TokenChunker] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Indexer:
        """The registry's default embedding model from the pool, and the configured store."""
        from hflambda.engines import get_pool
        from hflambda.registry import Task
        from hflambda.vectors import get_failure_ledger, get_vector_store

        def embedder() -> TokenizedEmbedder:
            # resolved per batch: a revision published by warmup is picked up on the next
            # one, and a registry or store problem fails the batch's records with its reason
            pool = get_pool()
            alias = pool.registry.default(Task.EMBEDDINGS).alias
            engine = pool.embedder(alias)
            if not isinstance(engine, TokenizedEmbedder):
                raise ModelNotReady(
                    alias,
                    f"its engine ({type(engine).__name__}) exposes no tokenizer, which token chunking needs",
                )
            return engine

        return cls(get_vector_store(), embedder, settings, ledger=get_failure_ledger())

    def warm(self) -> str | None:
        """Load the embedding model now (the init phase); returns why it cannot be, if so."""
        try:
            embedder = self.embedder()
        except HflambdaError as exc:
            logger.warning(
                "embedding model not ready: every record fails until warmup publishes it",
                extra={"reason": str(exc)},
            )
            return str(exc)
        logger.info(
            "embedding model loaded", extra={"model": embedder.alias, "revision": embedder.model.path.name}
        )
        return None

    def _chunker(self, embedder: TokenizedEmbedder) -> TokenChunker:
        chunker = self._chunkers.get(id(embedder.tokenizer))
        if chunker is None:
            chunker = TokenChunker(
                embedder.tokenizer,
                window=self.settings.chunk_tokens,
                overlap=self.settings.chunk_overlap,
                max_tokens=embedder.max_tokens,
            )
            self._chunkers = {id(embedder.tokenizer): chunker}
        return chunker

    def index(
        self, records: Sequence[QueueRecord], *, remaining: Callable[[], float] | None = None
    ) -> BatchOutcome:
        """Process one batch; every record is either acknowledged or in ``failures``.

        ``remaining()`` answers the seconds this invocation has left (the Lambda context's
        remaining time); records that cannot be finished within it (minus
        ``index_time_margin_seconds``), or beyond the memory budget of
        ``index_batch_max_chunks`` chunks, are failed with a "deferred" reason so that SQS
        redelivers only them. Small documents go first, so one user's large documents never
        hold up other users' small ones.
        """
        outcome = BatchOutcome()
        pending: list[_Pending] = []
        for record in records:
            try:
                message = parse_message(record.body)
            except MessageInvalid as exc:
                outcome.failures[record.message_id] = f"invalid message: {exc.reason}"
                continue
            pending.append(_Pending(record, message, _op(message, record.sent_ts)))
        if pending:
            self._index_valid(pending, outcome, remaining)
        self._report(records, outcome)
        return outcome

    def _fail(self, outcome: BatchOutcome, items: Sequence[_Pending], reason: str) -> None:
        for item in items:
            outcome.failures[item.record.message_id] = reason

    def _index_valid(
        self, pending: list[_Pending], outcome: BatchOutcome, remaining: Callable[[], float] | None
    ) -> None:
        try:
            embedder = self.embedder()
        except HflambdaError as exc:
            self._fail(outcome, pending, f"embedding model unavailable: {exc}")
            return
        space = vector_space(embedder)
        # newest message per document wins within the batch; older ones are superseded
        newest: dict[DocKey, _Pending] = {}
        for item in pending:
            held = newest.get(item.op.key)
            if held is None or item.op.version > held.op.version:
                newest[item.op.key] = item
        batch_superseded = [item for item in pending if newest[item.op.key] is not item]
        try:
            plan = self.store.plan([item.op for item in newest.values()], space)
        except Exception as exc:
            self._fail(outcome, pending, f"vector store unavailable: {type(exc).__name__}: {exc}")
            return
        outcome.superseded += len(batch_superseded) + sum(1 for s in plan.values() if s == "superseded")
        outcome.duplicates += sum(1 for s in plan.values() if s == "duplicate")
        work = [item for key, item in newest.items() if key not in plan]
        if not work:
            return
        chunker = self._chunker(embedder)
        planned: list[tuple[_Pending, list[TextChunk]]] = []
        for item in work:
            if isinstance(item.op, UpsertOp):
                reason = document_over_limits(item.op.text, item.op.metadata, self.settings)
                chunks: list[TextChunk] = []
                if reason is None:
                    chunks = chunker(item.op.text)
                    tokens = chunker.tokens(item.op.text)
                    reason = chunk_over_limits(tokens, len(chunks), self.settings)
                if reason is not None:
                    outcome.failures[item.record.message_id] = f"document too large: {reason}"
                    continue
                planned.append((item, chunks))
            else:
                planned.append((item, []))
        # the smallest documents first (one user's large ones never hold up others' small
        # ones), redeliveries first among equals
        planned.sort(key=lambda pair: (len(pair[1]), -pair[0].record.receive_count))
        admitted: list[tuple[_Pending, list[TextChunk]]] = []
        total = 0
        for item, chunks in planned:
            if chunks and admitted and total + len(chunks) > self.settings.index_batch_max_chunks:
                outcome.failures[item.record.message_id] = (
                    f"deferred: this invocation's budget of {self.settings.index_batch_max_chunks} chunks is spent; redelivered"
                )
                outcome.deferred += 1
                continue
            total += len(chunks)
            admitted.append((item, chunks))
        self._write_waves(admitted, embedder, space, plan, outcome, remaining)

    def _write_waves(
        self,
        admitted: list[tuple[_Pending, list[TextChunk]]],
        embedder: TokenizedEmbedder,
        space: VectorSpace,
        plan: Plan,
        outcome: BatchOutcome,
        remaining: Callable[[], float] | None,
    ) -> None:
        """Embed and write in waves of about ``max(index_embed_group, 256)`` chunks; before each
        wave, the time it is expected to take (measured on the waves before) is checked
        against the invocation's remaining time, and what cannot finish is deferred."""
        wave_chunks = max(self.settings.index_embed_group, 256)
        seconds_per_chunk = 0.0
        store_seconds = 0.0
        position = 0
        while position < len(admitted):
            wave: list[tuple[_Pending, list[TextChunk]]] = []
            size = 0
            while position < len(admitted) and (not wave or size + len(admitted[position][1]) <= wave_chunks):
                wave.append(admitted[position])
                size += len(admitted[position][1])
                position += 1
            if remaining is not None and outcome.written + outcome.deleted > 0:
                needed = seconds_per_chunk * size + store_seconds + self.settings.index_time_margin_seconds
                if remaining() < needed:
                    rest = [item for item, _ in wave] + [item for item, _ in admitted[position:]]
                    self._fail(
                        outcome, rest, "deferred: not enough time left in this invocation; redelivered"
                    )
                    outcome.deferred += len(rest)
                    return
            started = time.perf_counter()
            items = self._embed_wave(wave, embedder, outcome)
            embedded_at = time.perf_counter()
            if size:
                seconds_per_chunk = max(seconds_per_chunk, (embedded_at - started) / size)
            if not items:
                continue
            try:
                result = self.store.apply([item.op for item in items], space, plan)
            except Exception as exc:
                self._fail(outcome, items, f"vector store write failed: {type(exc).__name__}: {exc}")
                continue
            finally:
                store_seconds = max(store_seconds, time.perf_counter() - embedded_at)
                outcome.store_ms += (time.perf_counter() - embedded_at) * 1000
            by_key = {item.op.key: item for item in items}
            for key, reason in result.failed.items():
                outcome.failures[by_key[key].record.message_id] = (
                    f"vector store refused the document: {reason}"
                )
            outcome.written += len(result.written)
            outcome.deleted += len(result.deleted)
            outcome.superseded += len(result.superseded)
            outcome.chunks += result.chunks_written

    def _embed_wave(
        self, wave: list[tuple[_Pending, list[TextChunk]]], embedder: TokenizedEmbedder, outcome: BatchOutcome
    ) -> list[_Pending]:
        """Attach chunk vectors to the wave's upserts; returns the items still to write."""
        upserts = [
            (cast(UpsertOp, item.op), chunks) for item, chunks in wave if isinstance(item.op, UpsertOp)
        ]
        started = time.perf_counter()
        embedded, failed = embed_chunked(upserts, embedder, self.settings.index_embed_group)
        outcome.embed_ms += (time.perf_counter() - started) * 1000
        ready = []
        for item, _ in wave:
            if item.op.key in failed:
                outcome.failures[item.record.message_id] = failed[item.op.key]
                continue
            if isinstance(item.op, UpsertOp):
                item.op = embedded[item.op.key]
            ready.append(item)
        return ready

    def reindex(
        self, *, batch_size: int = 64, progress: Callable[[int, int], None] | None = None
    ) -> ReindexReport:
        """Re-embed every live document that has no chunks in the live model's vector space.

        Uses the text kept in the catalogue (chunked anew: a new revision may tokenize
        differently). Safe to run while the index function runs: a document updated
        meanwhile keeps its newer version. ``progress(documents, chunks)`` is called per page.
        """
        embedder = self.embedder()
        space = vector_space(embedder)
        chunker = self._chunker(embedder)
        report = ReindexReport(space=space)
        for page in self.store.stale_documents(space, batch_size=batch_size):
            ops = [
                UpsertOp(
                    user_id=d.user_id,
                    document_id=d.document_id,
                    version=d.version,
                    ts=d.ts,
                    text=d.text,
                    metadata=d.metadata,
                )
                for d in page
            ]
            embedded, failed = embed_documents(ops, embedder, chunker, self.settings.index_embed_group)
            report.failed.update(failed)
            result = self.store.reindex(list(embedded.values()), space)
            report.documents += len(result.written)
            report.superseded += len(result.superseded)
            report.chunks += result.chunks_written
            if progress is not None:
                progress(len(result.written), result.chunks_written)
        return report

    def _report(self, records: Sequence[QueueRecord], outcome: BatchOutcome) -> None:
        by_id = {r.message_id: r for r in records}
        for message_id, reason in outcome.failures.items():
            record = by_id[message_id]
            logger.warning(
                "index record failed",
                extra={"message_id": message_id, "reason": reason, "receive_count": record.receive_count},
            )
        if outcome.failures and self.ledger is not None:
            now = datetime.now(UTC)
            self.ledger.record_failures(
                FailureRecord(
                    message_id=message_id,
                    reason=reason,
                    receive_count=by_id[message_id].receive_count,
                    source=by_id[message_id].source,
                    recorded_at=now,
                )
                for message_id, reason in outcome.failures.items()
            )
        metrics.add_metric(name="IndexRecords", unit=MetricUnit.Count, value=len(records))
        metrics.add_metric(
            name="IndexFailedRecords", unit=MetricUnit.Count, value=len(outcome.failures) - outcome.deferred
        )
        metrics.add_metric(name="IndexDeferredRecords", unit=MetricUnit.Count, value=outcome.deferred)
        metrics.add_metric(name="IndexChunksWritten", unit=MetricUnit.Count, value=outcome.chunks)
        metrics.add_metric(name="IndexEmbedMs", unit=MetricUnit.Milliseconds, value=outcome.embed_ms)
        metrics.add_metric(name="IndexStoreMs", unit=MetricUnit.Milliseconds, value=outcome.store_ms)


def embed_documents(
    ops: Sequence[UpsertOp], embedder: Embedder, chunker: TokenChunker, group: int
) -> tuple[dict[DocKey, UpsertOp], dict[DocKey, str]]:
    """Chunk and embed upserts (see ``embed_chunked``)."""
    return embed_chunked([(op, chunker(op.text)) for op in ops], embedder, group)


def embed_chunked(
    planned: Sequence[tuple[UpsertOp, list[TextChunk]]], embedder: Embedder, group: int
) -> tuple[dict[DocKey, UpsertOp], dict[DocKey, str]]:
    """Embed chunked upserts: all chunks together in groups of ``group``.

    Returns the upserts with their chunks attached, and the documents that could not be
    embedded with the reason (when a group fails, its documents are retried one by one so
    one bad document does not fail the others).
    """
    texts = [c.text for _, chunks in planned for c in chunks]
    group = max(1, group)
    vectors: np.ndarray | None = None
    if texts:
        try:
            vectors = np.concatenate(
                [embedder.embed(texts[i : i + group], truncate=True) for i in range(0, len(texts), group)]
            )
        except Exception as exc:
            logger.warning(
                "batch embedding failed; embedding documents one by one", extra={"error": str(exc)}
            )
            vectors = None
    embedded: dict[DocKey, UpsertOp] = {}
    failed: dict[DocKey, str] = {}
    position = 0
    for op, chunks in planned:
        if vectors is not None:
            doc_vectors = vectors[position : position + len(chunks)]
            position += len(chunks)
        else:
            try:
                doc_vectors = embedder.embed([c.text for c in chunks], truncate=True)
            except Exception as exc:
                failed[op.key] = f"embedding failed: {type(exc).__name__}: {exc}"
                continue
        embedded[op.key] = replace(
            op,
            chunks=tuple(
                Chunk(chunk=c.chunk, text=c.text, start=c.start, end=c.end, vector=v)
                for c, v in zip(chunks, doc_vectors, strict=True)
            ),
        )
    return embedded, failed


def document_over_limits(text: str, metadata: Mapping[str, Any], settings: Settings) -> str | None:
    """Why a document breaks the per-document size limits (text, metadata, filter terms), or None."""
    if len(text) > settings.document_max_chars:
        return f"text has {len(text)} characters; the limit is {settings.document_max_chars} (HFLAMBDA_DOCUMENT_MAX_CHARS)"
    meta_bytes = len(
        json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    )
    if meta_bytes > settings.document_max_metadata_bytes:
        return f"metadata is {meta_bytes} bytes; the limit is {settings.document_max_metadata_bytes} (HFLAMBDA_DOCUMENT_MAX_METADATA_BYTES)"
    filter_bytes = sum(len(t.encode("utf-8")) for t in metadata_tags(metadata))
    if filter_bytes > settings.document_max_filter_bytes:
        return (
            f"the filterable metadata (scalars and lists of scalars) is {filter_bytes} bytes; "
            f"the limit is {settings.document_max_filter_bytes} (HFLAMBDA_DOCUMENT_MAX_FILTER_BYTES)"
        )
    return None


def chunk_over_limits(tokens: int, chunks: int, settings: Settings) -> str | None:
    """Why a tokenized document breaks the token or chunk limits, or None."""
    if tokens > settings.document_max_tokens:
        return f"text has {tokens} tokens; the limit is {settings.document_max_tokens} (HFLAMBDA_DOCUMENT_MAX_TOKENS)"
    if chunks > settings.document_max_chunks:
        return f"text makes {chunks} chunks; the limit is {settings.document_max_chunks} (HFLAMBDA_DOCUMENT_MAX_CHUNKS)"
    return None


def _op(message: UpsertMessage | DeleteMessage, sent_ts: int) -> WriteOp:
    ts = message.ts if message.ts is not None else sent_ts
    if isinstance(message, UpsertMessage):
        return UpsertOp(
            user_id=message.user_id,
            document_id=message.document.id,
            version=message.version(sent_ts),
            ts=ts,
            text=message.document.text,
            metadata=dict(message.document.metadata),
        )
    return DeleteOp(
        user_id=message.user_id, document_id=message.document_id, version=message.version(sent_ts), ts=ts
    )

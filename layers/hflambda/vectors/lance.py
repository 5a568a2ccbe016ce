"""Local backend: LanceDB in a local folder, one machine (``hflambda dev``, tests, the bench).

In AWS the vectors live in S3 Vectors + DynamoDB (``hflambda.vectors.aws``): LanceDB on S3
with many concurrent writers leaves stale rows and collapses under commit contention, so
this backend refuses ``s3://`` locations.

Tables (one LanceDB database in the folder ``uri``; created with stable row ids, so a row
id read before another writer's compaction still names the same row when settle deletes it):

``documents``
    the catalogue: one row per ``(user_id, document_id)`` with the newest version key, full
    text and metadata, or a tombstone (``deleted = true``) after a delete. Tombstones are
    kept (they are what stops a late, older upsert from resurrecting a deleted document);
    they hold no text.
``vchunks_<dimensions>``
    one row per chunk with its vector and the document's filter terms, per vector size (a
    model with another size gets its own table instead of breaking the schema). The
    metadata itself is stored once per document, in the catalogue.
``index_failures``
    why the index function failed a message (for ``hflambda dlq list``), expired by
    ``maintain``.

Write protocol (``apply``), correct under concurrent writers without locks:

1. read the catalogue rows of the batch; drop ops older than what is stored;
2. ``merge_insert`` the catalogue on ``(user_id, document_id)`` updating only when
   ``target.version < source.version`` (newest wins, atomic per commit);
3. ``merge_insert`` the chunks on ``(user_id, document_id, chunk)`` with the same guard;
4. *settle*: re-read the catalogue and the chunk rows of the batch's documents and delete
   every chunk row that is not of the document's current version (tombstone: all of
   them), plus duplicate rows two concurrent inserts of one new key can leave.

Whatever the interleaving, the writer whose catalogue commit is last settles after it (or
a writer that wrote after it settles after that), so each document converges to exactly the
chunks of its newest version. Every read uses a zero read-consistency interval, so it sees
other processes' commits, and nothing about the tables (their list, their indexes) is cached
across reads. A search keeps a hit only when its version is the catalogue's current one (as
the AWS backend does), so a stale chunk is never shown, even before settle removed it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from hflambda.telemetry import logger
from hflambda.vectors.base import VectorStore, filter_tags, metadata_tags
from hflambda.vectors.ledger import FailureLedger, FailureRecord
from hflambda.vectors.types import (
    ApplyResult,
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

__all__ = ["LanceVectorStore", "sql_literal"]

CATALOGUE = "documents"
FAILURES = "index_failures"
CHUNKS_PREFIX = "vchunks_"
_STABLE_ROW_IDS = {"new_table_enable_stable_row_ids": "true"}
_TS = pa.timestamp("us", tz="UTC")
_IN_LIST = 500  # keys per IN list / rowids per delete, to keep predicates small
_SEARCH_COLUMNS = ["document_id", "chunk", "version", "text", "start", "end", "_distance"]

CATALOGUE_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("document_id", pa.string()),
        ("version", pa.string()),
        ("ts", pa.int64()),
        ("deleted", pa.bool_()),
        ("text", pa.large_string()),
        ("metadata", pa.string()),
        ("chunks", pa.int32()),
        ("created_at", _TS),
        ("updated_at", _TS),
    ]
)

FAILURE_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("reason", pa.string()),
        ("receive_count", pa.int32()),
        ("source", pa.string()),
        ("recorded_at", _TS),
    ]
)


def chunk_schema(dimensions: int) -> pa.Schema:
    """Schema of the chunk table for vectors of ``dimensions``."""
    return pa.schema(
        [
            ("user_id", pa.string()),
            ("document_id", pa.string()),
            ("chunk", pa.int32()),
            ("version", pa.string()),
            ("ts", pa.int64()),
            ("text", pa.string()),
            ("start", pa.int32()),
            ("end", pa.int32()),
            ("tags", pa.list_(pa.string())),
            ("model_alias", pa.string()),
            ("model_revision", pa.string()),
            ("created_at", _TS),
            ("updated_at", _TS),
            ("vector", pa.list_(pa.float32(), dimensions)),
        ]
    )


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal (quotes doubled; backslash is not an escape here)."""
    return "'" + value.replace("'", "''") + "'"


def _keys_predicate(keys: Iterable[DocKey]) -> str:
    by_user: dict[str, set[str]] = defaultdict(set)
    for user_id, document_id in keys:
        by_user[user_id].add(document_id)
    clauses = []
    for user_id, ids in sorted(by_user.items()):
        ordered = sorted(ids)
        for start in range(0, len(ordered), _IN_LIST):
            listed = ", ".join(sql_literal(i) for i in ordered[start : start + _IN_LIST])
            clauses.append(f"(user_id = {sql_literal(user_id)} AND document_id IN ({listed}))")
    return " OR ".join(clauses) if clauses else "false"


def _json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _stored(row: dict[str, Any]) -> StoredDocument:
    return StoredDocument(
        user_id=row["user_id"],
        document_id=row["document_id"],
        version=row["version"],
        ts=int(row["ts"]),
        deleted=bool(row["deleted"]),
        text=row.get("text") or "",
        metadata=json.loads(row.get("metadata") or "{}"),
        chunks=int(row.get("chunks") or 0),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class LanceVectorStore(VectorStore, FailureLedger):
    """The vector store on LanceDB."""

    def __init__(
        self,
        uri: str,
        *,
        index_min_rows: int = 50_000,
        keep_versions: timedelta = timedelta(hours=1),
        failure_retention: timedelta = timedelta(days=14),
        optimize_every: int = 50,
    ) -> None:
        import lancedb

        if "://" in uri and not uri.startswith("file://"):
            raise ValueError(
                f"the local vector backend takes a folder, not {uri!r}; in AWS use HFLAMBDA_VECTOR_BACKEND=aws (S3 Vectors)"
            )
        self.uri = uri
        self.index_min_rows = index_min_rows
        self.optimize_every = optimize_every
        self._writes = 0
        self.keep_versions = keep_versions
        self.failure_retention = failure_retention
        # zero interval: every read checks for commits of other processes (correctness of
        # the settle step depends on it)
        self.db = lancedb.connect(uri, read_consistency_interval=timedelta(0))
        self._tables: dict[str, Any] = {}

    # --- tables ------------------------------------------------------------------------

    def _open(self, name: str) -> Any | None:
        table = self._tables.get(name)
        if table is None:
            try:
                table = self.db.open_table(name)
            except (ValueError, FileNotFoundError, OSError, RuntimeError):
                return None
            self._tables[name] = table
        return table

    def _ensure(self, name: str, schema: pa.Schema) -> Any:
        table = self._open(name)
        if table is not None:
            return table
        try:
            table = self.db.create_table(name, schema=schema, exist_ok=True, storage_options=_STABLE_ROW_IDS)
        except (ValueError, OSError, RuntimeError):
            # another writer created it between our open and create
            table = self.db.open_table(name)
        self._tables[name] = table
        return table

    def _chunk_tables(self) -> list[tuple[str, Any]]:
        # listed on every call (a local directory listing): a table another process created
        # a moment ago is never missed by settle or plan
        tables = [(n, self._open(n)) for n in self._table_names() if n.startswith(CHUNKS_PREFIX)]
        return [(n, t) for n, t in tables if t is not None]

    def _table_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self.db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def _chunks(self, space: VectorSpace) -> Any | None:
        return self._open(f"{CHUNKS_PREFIX}{space.dimensions}")

    # --- reads -------------------------------------------------------------------------

    def _catalogue_rows(
        self, keys: Iterable[DocKey], *, with_text: bool = True, row_ids: bool = False
    ) -> list[dict[str, Any]]:
        table = self._open(CATALOGUE)
        keys = list(keys)
        if table is None or not keys:
            return []
        columns = [f.name for f in CATALOGUE_SCHEMA if with_text or f.name != "text"]
        query = table.search().where(_keys_predicate(keys)).with_row_id(row_ids).select(columns)
        return list(query.limit(None).to_arrow().to_pylist())

    def _current(self, keys: Iterable[DocKey]) -> dict[DocKey, dict[str, Any]]:
        """The newest catalogue row per key, without text or row ids (search's cheap read:
        asking for ``_rowid`` costs several times the query on a stable-row-id table)."""
        table = self._open(CATALOGUE)
        keys = list(keys)
        if table is None or not keys:
            return {}
        columns = ["user_id", "document_id", "version", "deleted", "metadata", "ts"]
        rows = table.search().where(_keys_predicate(keys)).select(columns).limit(None).to_arrow().to_pylist()
        return self._latest(rows)

    @staticmethod
    def _latest(rows: Iterable[dict[str, Any]]) -> dict[DocKey, dict[str, Any]]:
        latest: dict[DocKey, dict[str, Any]] = {}
        for row in rows:
            key = (row["user_id"], row["document_id"])
            if key not in latest or row["version"] > latest[key]["version"]:
                latest[key] = row
        return latest

    def get_document(self, user_id: str, document_id: str) -> StoredDocument | None:
        """The catalogue row of one document (tombstones included)."""
        row = self._latest(self._catalogue_rows([(user_id, document_id)])).get((user_id, document_id))
        return _stored(row) if row else None

    def count_chunks(self, space: VectorSpace, *, user_id: str | None = None) -> int:
        """Chunk rows of ``space`` (optionally of one user)."""
        table = self._chunks(space)
        if table is None:
            return 0
        predicate = f"model_revision = {sql_literal(space.revision)}"
        if user_id is not None:
            predicate += f" AND user_id = {sql_literal(user_id)}"
        return int(table.count_rows(predicate))

    def chunk_rows(self, keys: Iterable[DocKey], space: VectorSpace) -> list[dict[str, Any]]:
        """Chunk rows (without vectors) of the given documents — for checks and tests."""
        table = self._chunks(space)
        keys = list(keys)
        if table is None or not keys:
            return []
        columns = ["user_id", "document_id", "chunk", "version", "text", "start", "end", "model_revision"]
        return list(
            table.search().where(_keys_predicate(keys)).select(columns).limit(None).to_arrow().to_pylist()
        )

    # --- writes ------------------------------------------------------------------------

    def plan(self, ops: Sequence[WriteOp], space: VectorSpace) -> Plan:
        """Ops that need no work (superseded, or already indexed exactly so)."""
        latest = self._latest(self._catalogue_rows((op.key for op in ops), with_text=False))
        skips = Plan()
        skips.snapshot = (frozenset(op.key for op in ops), latest)
        same: dict[DocKey, WriteOp] = {}
        for op in ops:
            stored = latest.get(op.key)
            if stored is None:
                continue
            if stored["version"] > op.version:
                skips[op.key] = "superseded"
            elif stored["version"] == op.version:
                same[op.key] = op
        if same:
            rows_by_key: dict[DocKey, list[dict[str, Any]]] = defaultdict(list)
            anywhere: set[DocKey] = set()
            space_table = f"{CHUNKS_PREFIX}{space.dimensions}"
            for name, table in self._chunk_tables():
                columns = ["user_id", "document_id", "chunk", "version", "model_revision"]
                query = table.search().where(_keys_predicate(same)).select(columns).limit(None)
                for row in query.to_arrow().to_pylist():
                    key = (row["user_id"], row["document_id"])
                    anywhere.add(key)
                    if name == space_table:
                        rows_by_key[key].append(row)
            for key, op in same.items():
                rows = rows_by_key.get(key, [])
                if op.deleted:
                    complete = key not in anywhere
                else:
                    # one merge writes all chunks of a version at once: contiguous from 0 is complete
                    complete = (
                        bool(rows)
                        and sorted(r["chunk"] for r in rows) == list(range(len(rows)))
                        and all(
                            r["version"] == op.version and r["model_revision"] == space.revision for r in rows
                        )
                    )
                if complete:
                    skips[key] = "duplicate"
        superseded = [key for key, skip in skips.items() if skip == "superseded"]
        if superseded:
            # a superseded redelivery may be the retry of a writer that died after writing
            # its (older) chunks: settle removes them now instead of at the next write
            self._settle(superseded, {}, space)
        return skips

    @staticmethod
    def _newest_per_key(ops: Sequence[WriteOp]) -> dict[DocKey, WriteOp]:
        newest: dict[DocKey, WriteOp] = {}
        for op in ops:
            if op.key not in newest or op.version > newest[op.key].version:
                newest[op.key] = op
        return newest

    def apply(self, ops: Sequence[WriteOp], space: VectorSpace, plan: Plan | None = None) -> ApplyResult:
        """Write a batch newest-wins (see the module docstring for the protocol)."""
        result = ApplyResult()
        newest = self._newest_per_key(ops)
        result.superseded.extend(op.key for op in ops if newest[op.key] is not op)
        if not newest:
            return result
        now = datetime.now(UTC)
        planned = plan.snapshot if plan is not None and isinstance(plan.snapshot, tuple) else None
        if planned is not None and planned[0] >= newest.keys():
            before = {key: row for key, row in planned[1].items() if key in newest}
        else:
            before = self._latest(self._catalogue_rows(newest, with_text=False))
        live: list[WriteOp] = []
        changed: list[WriteOp] = []
        for key, op in newest.items():
            stored = before.get(key)
            if stored is not None and stored["version"] > op.version:
                result.superseded.append(key)
                continue
            live.append(op)
            if stored is None or stored["version"] < op.version:
                changed.append(op)
        if changed:
            self._merge_catalogue(changed, before, now)
        upserts = [op for op in live if isinstance(op, UpsertOp)]
        if upserts:
            result.chunks_written = self._merge_chunks(upserts, space, before, now)
        settle = [op.key for op in live] + [
            key for key in result.superseded if key not in newest or key not in {op.key for op in live}
        ]
        result.repaired = self._settle(
            list(dict.fromkeys(settle)), {op.key: op.version for op in upserts}, space
        )
        for op in live:
            (result.deleted if op.deleted else result.written).append(op.key)
        self._after_write(space)
        return result

    def _after_write(self, space: VectorSpace) -> None:
        """Every ``optimize_every`` writes of this process: compact the tables it writes.

        Each batch adds a few small fragments; reads slow down with their number (a
        catalogue lookup over 200 fragments took 33 ms, 5 ms after compaction), so writers
        compact as they go instead of waiting for the scheduled maintenance. LanceDB's
        compaction rewrites the whole table, so a table of ``index_min_rows`` rows or more
        is left to the scheduled ``maintain`` (which then must run every few minutes on a
        busy store). Best effort: a compaction that loses a race is logged, retried later.
        """
        self._writes += 1
        if not self.optimize_every or self._writes % self.optimize_every:
            return
        for name in (CATALOGUE, f"{CHUNKS_PREFIX}{space.dimensions}"):
            table = self._open(name)
            if table is None or int(table.count_rows()) >= self.index_min_rows:
                continue
            started = time.perf_counter()
            try:
                table.optimize(cleanup_older_than=self.keep_versions)
            except Exception as exc:
                logger.warning(
                    "vector table compaction failed; will retry",
                    extra={"table": name, "error": f"{type(exc).__name__}: {exc}"},
                )
                continue
            logger.info(
                "vector table compacted",
                extra={"table": name, "ms": round((time.perf_counter() - started) * 1000, 1)},
            )

    def reindex(self, ops: Sequence[UpsertOp], space: VectorSpace) -> ApplyResult:
        """Write chunks in ``space`` for documents whose catalogue version is still ``op.version``."""
        result = ApplyResult()
        newest = self._newest_per_key(ops)
        current = self._latest(self._catalogue_rows(newest, with_text=False))
        todo: list[UpsertOp] = []
        for key, op in newest.items():
            stored = current.get(key)
            if stored is None or stored["deleted"] or stored["version"] != op.version:
                result.superseded.append(key)
            else:
                todo.append(op)  # type: ignore[arg-type]
        if todo:
            result.chunks_written = self._merge_chunks(todo, space, current, datetime.now(UTC))
            result.repaired = self._settle(
                [op.key for op in todo], {op.key: op.version for op in todo}, space
            )
            result.written.extend(op.key for op in todo)
        return result

    def _merge_catalogue(
        self, ops: Sequence[WriteOp], before: Mapping[DocKey, dict[str, Any]], now: datetime
    ) -> None:
        rows = []
        for op in ops:
            stored = before.get(op.key)
            created = stored["created_at"] if stored is not None and not stored["deleted"] else now
            upsert = isinstance(op, UpsertOp)
            rows.append(
                {
                    "user_id": op.user_id,
                    "document_id": op.document_id,
                    "version": op.version,
                    "ts": op.ts,
                    "deleted": op.deleted,
                    "text": op.text if isinstance(op, UpsertOp) else "",
                    "metadata": _json(op.metadata) if isinstance(op, UpsertOp) else "{}",
                    "chunks": len(op.chunks) if isinstance(op, UpsertOp) else 0,
                    "created_at": created if upsert else now,
                    "updated_at": now,
                }
            )
        table = self._ensure(CATALOGUE, CATALOGUE_SCHEMA)
        data = pa.Table.from_pylist(rows, schema=CATALOGUE_SCHEMA)
        (
            table.merge_insert(["user_id", "document_id"])
            .when_matched_update_all(where="target.version < source.version")
            .when_not_matched_insert_all()
            .execute(data)
        )

    def _merge_chunks(
        self,
        ops: Sequence[UpsertOp],
        space: VectorSpace,
        before: Mapping[DocKey, dict[str, Any]],
        now: datetime,
    ) -> int:
        columns: dict[str, list[Any]] = defaultdict(list)
        vectors: list[np.ndarray] = []
        for op in ops:
            stored = before.get(op.key)
            created = stored["created_at"] if stored is not None and not stored["deleted"] else now
            tags = metadata_tags(op.metadata)
            for chunk in op.chunks:
                if chunk.vector.shape != (space.dimensions,):
                    raise ValueError(
                        f"chunk {chunk.chunk} of {op.document_id!r} has a vector of shape {chunk.vector.shape}, "
                        f"expected ({space.dimensions},)"
                    )
                columns["user_id"].append(op.user_id)
                columns["document_id"].append(op.document_id)
                columns["chunk"].append(chunk.chunk)
                columns["version"].append(op.version)
                columns["ts"].append(op.ts)
                columns["text"].append(chunk.text)
                columns["start"].append(chunk.start)
                columns["end"].append(chunk.end)
                columns["tags"].append(tags)
                columns["model_alias"].append(space.alias)
                columns["model_revision"].append(space.revision)
                columns["created_at"].append(created)
                columns["updated_at"].append(now)
                vectors.append(chunk.vector)
        if not vectors:
            return 0
        schema = chunk_schema(space.dimensions)
        flat = pa.array(np.ascontiguousarray(np.stack(vectors), dtype=np.float32).ravel())
        arrays = [pa.array(columns[f.name], type=f.type) for f in schema if f.name != "vector"]
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, space.dimensions))
        data = pa.Table.from_arrays(arrays, schema=schema)
        table = self._ensure(f"{CHUNKS_PREFIX}{space.dimensions}", schema)
        (
            table.merge_insert(["user_id", "document_id", "chunk"])
            .when_matched_update_all(
                where="target.version < source.version OR "
                "(target.version = source.version AND target.model_revision <> source.model_revision)"
            )
            .when_not_matched_insert_all()
            .execute(data)
        )
        return len(vectors)

    def _settle(self, keys: Sequence[DocKey], written: Mapping[DocKey, str], space: VectorSpace) -> int:
        """Delete chunk rows older than their document's current version, and duplicates.

        Only rows *older* than the catalogue version read here are deleted: a newer row
        belongs to a writer that committed after this read and settles after itself. So the
        reads may run in any order (here: concurrently). ``written`` maps the documents this
        writer just wrote in ``space`` to the version it wrote: when that version is current,
        its rows from another model revision are stale too.
        """
        if not keys:
            return 0
        predicate = _keys_predicate(keys)
        columns = ["user_id", "document_id", "chunk", "version", "model_revision"]
        tables = self._chunk_tables()
        with ThreadPoolExecutor(max_workers=1 + len(tables)) as pool:
            catalogue_future = pool.submit(self._catalogue_rows, keys, with_text=False, row_ids=True)
            chunk_futures = [
                (
                    name,
                    table,
                    pool.submit(
                        lambda t: (
                            t.search()
                            .where(predicate)
                            .with_row_id(True)
                            .select(columns)
                            .limit(None)
                            .to_arrow()
                        ),
                        table,
                    ),
                )
                for name, table in tables
            ]
            catalogue_rows = catalogue_future.result()
            chunk_rows = [(name, table, future.result().to_pylist()) for name, table, future in chunk_futures]
        latest = self._latest(catalogue_rows)
        removed = 0
        # duplicate catalogue rows (concurrent first inserts of one key): keep the newest
        stale_catalogue = [
            r["_rowid"] for r in catalogue_rows if latest[(r["user_id"], r["document_id"])] is not r
        ]
        if stale_catalogue:
            removed += self._delete_rowids(self._open(CATALOGUE), stale_catalogue)
        space_table = f"{CHUNKS_PREFIX}{space.dimensions}"
        for name, table, rows in chunk_rows:
            stale: list[int] = []
            seen: set[tuple[str, str, int, str]] = set()
            for row in rows:
                key = (row["user_id"], row["document_id"])
                current = latest.get(key)
                if current is None:
                    continue  # written after our catalogue read: its writer settles it
                version = row["version"]
                if version < current["version"] or (version == current["version"] and current["deleted"]):
                    stale.append(int(row["_rowid"]))
                    continue
                if (
                    version == current["version"]
                    and name == space_table
                    and written.get(key) == version
                    and row["model_revision"] != space.revision
                ):
                    stale.append(int(row["_rowid"]))  # replaced by this writer's revision
                    continue
                ident = (key[0], key[1], int(row["chunk"]), version)
                if ident in seen:
                    stale.append(int(row["_rowid"]))  # a duplicate of a row we keep
                else:
                    seen.add(ident)
            if stale:
                removed += self._delete_rowids(table, stale)
        if removed:
            logger.info("vector store settled stale rows", extra={"rows": removed, "documents": len(keys)})
        return removed

    @staticmethod
    def _delete_rowids(table: Any, rowids: Sequence[int]) -> int:
        for start in range(0, len(rowids), _IN_LIST):
            listed = ", ".join(str(r) for r in rowids[start : start + _IN_LIST])
            table.delete(f"_rowid IN ({listed})")
        return len(rowids)

    # --- search ------------------------------------------------------------------------

    def has_vector_index(self, space: VectorSpace) -> bool:
        """Whether the chunk table of ``space`` has an ANN index on ``vector`` (read each time:
        a local listing; a cached answer once kept searches on a path that no longer matched
        the table another process had just changed)."""
        table = self._chunks(space)
        return table is not None and any("vector" in idx.columns for idx in table.list_indices())

    def search(
        self,
        user_id: str,
        vector: np.ndarray,
        *,
        space: VectorSpace,
        top_k: int = 10,
        filter: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        """Nearest documents of ``user_id`` in ``space`` (one hit per document, best chunk)."""
        table = self._chunks(space)
        if table is None or top_k <= 0:
            return []
        query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query_vector.shape != (space.dimensions,):
            raise ValueError(
                f"query vector has {query_vector.shape[0]} dimensions, the space has {space.dimensions}"
            )
        predicate = f"user_id = {sql_literal(user_id)} AND model_revision = {sql_literal(space.revision)}"
        for any_of in filter_tags(filter):
            predicate += " AND (" + " OR ".join(f"array_has(tags, {sql_literal(t)})" for t in any_of) + ")"
        indexed = self.has_vector_index(space)
        limit = max(top_k * 3, 10)
        while True:
            query = (
                table.search(query_vector, vector_column_name="vector")
                .distance_type("cosine")
                .where(predicate, prefilter=True)
                .select(_SEARCH_COLUMNS)
                .limit(limit)
            )
            if indexed:
                query = query.nprobes(20).refine_factor(4)
            rows = query.to_arrow().to_pylist()
            # the catalogue decides what is current: a chunk of another version is never shown
            current = self._current({(user_id, r["document_id"]) for r in rows})
            best: dict[str, dict[str, Any]] = {}
            for row in rows:
                doc = current.get((user_id, row["document_id"]))
                if doc is None or doc["deleted"] or doc["version"] != row["version"]:
                    continue
                held = best.get(row["document_id"])
                if held is None or row["_distance"] < held["_distance"]:
                    best[row["document_id"]] = row
            if len(best) >= top_k or len(rows) < limit or limit >= 10_000:
                break
            limit *= 4
        ranked = sorted(best.values(), key=lambda r: r["_distance"])[:top_k]
        return [
            SearchHit(
                document_id=r["document_id"],
                score=float(1.0 - r["_distance"]),
                chunk=int(r["chunk"]),
                text=r["text"],
                start=int(r["start"]),
                end=int(r["end"]),
                metadata=json.loads(current[(user_id, r["document_id"])]["metadata"] or "{}"),
                ts=int(current[(user_id, r["document_id"])]["ts"]),
            )
            for r in ranked
        ]

    # --- reindex -----------------------------------------------------------------------

    def stale_documents(self, space: VectorSpace, *, batch_size: int = 256) -> Iterator[list[StoredDocument]]:
        """Live documents with no chunk of their current version in ``space``, in pages."""
        catalogue = self._open(CATALOGUE)
        if catalogue is None:
            return
        fresh: set[tuple[str, str, str]] = set()
        chunks = self._chunks(space)
        if chunks is not None:
            query = chunks.search().where(f"chunk = 0 AND model_revision = {sql_literal(space.revision)}")
            for row in query.select(["user_id", "document_id", "version"]).limit(None).to_arrow().to_pylist():
                fresh.add((row["user_id"], row["document_id"], row["version"]))
        rows = (
            catalogue.search().select([f.name for f in CATALOGUE_SCHEMA]).limit(None).to_arrow().to_pylist()
        )
        page: list[StoredDocument] = []
        for row in self._latest(rows).values():
            if row["deleted"] or (row["user_id"], row["document_id"], row["version"]) in fresh:
                continue
            page.append(_stored(row))
            if len(page) >= batch_size:
                yield page
                page = []
        if page:
            yield page

    # --- maintenance -------------------------------------------------------------------

    def maintain(self, space: VectorSpace | None = None) -> MaintenanceReport:
        """Expire failures, create missing indexes, compact, refresh indexes, prune versions."""
        started = time.perf_counter()
        report = MaintenanceReport()
        failures = self._open(FAILURES)
        if failures is not None:
            cutoff = (datetime.now(UTC) - self.failure_retention).strftime("%Y-%m-%dT%H:%M:%S")
            expired = int(failures.count_rows(f"recorded_at < timestamp '{cutoff}'"))
            if expired:
                failures.delete(f"recorded_at < timestamp '{cutoff}'")
                report.failures_expired = expired
        from lancedb.index import Bitmap, BTree, HnswSq

        wanted: dict[str, list[tuple[str, Any]]] = {
            CATALOGUE: [("user_id", Bitmap()), ("document_id", BTree())],
        }
        for name, _table in self._chunk_tables():
            wanted[name] = [("user_id", Bitmap()), ("document_id", BTree()), ("model_revision", Bitmap())]
        for name in [*wanted, FAILURES]:
            table = self._open(name)
            if table is None:
                continue
            rows = int(table.count_rows())
            report.rows[name] = rows
            if rows == 0:
                continue
            indexed = {col for idx in table.list_indices() for col in idx.columns}
            for column, config in wanted.get(name, []):
                if column not in indexed:
                    table.create_index(column, config=config)
                    report.indexes_created.append(f"{name}.{column}")
            if name.startswith(CHUNKS_PREFIX) and "vector" not in indexed and rows >= self.index_min_rows:
                table.create_index("vector", config=HnswSq(distance_type="cosine"))
                report.indexes_created.append(f"{name}.vector")
            table.optimize(cleanup_older_than=self.keep_versions)
            report.optimized.append(name)
        report.seconds = time.perf_counter() - started
        return report

    # --- failures ----------------------------------------------------------------------

    def record_failures(self, failures: Iterable[FailureRecord]) -> None:
        """Append failure records (best effort: a store problem is logged, never raised)."""
        records = list(failures)
        if not records:
            return
        try:
            table = self._ensure(FAILURES, FAILURE_SCHEMA)
            table.add(
                pa.Table.from_pylist(
                    [
                        {
                            "message_id": r.message_id,
                            "reason": r.reason[:4000],
                            "receive_count": r.receive_count,
                            "source": r.source,
                            "recorded_at": r.recorded_at,
                        }
                        for r in records
                    ],
                    schema=FAILURE_SCHEMA,
                )
            )
        except Exception as exc:  # recording must never turn a failed record into a crashed batch
            logger.warning(
                "could not record failure reasons", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    def failure_reasons(self, message_ids: Iterable[str]) -> dict[str, FailureRecord]:
        """Latest recorded failure per message id."""
        table = self._open(FAILURES)
        ids = sorted(set(message_ids))
        if table is None or not ids:
            return {}
        found: dict[str, FailureRecord] = {}
        for start in range(0, len(ids), _IN_LIST):
            listed = ", ".join(sql_literal(i) for i in ids[start : start + _IN_LIST])
            rows = table.search().where(f"message_id IN ({listed})").limit(None).to_arrow().to_pylist()
            for row in rows:
                record = FailureRecord(
                    message_id=row["message_id"],
                    reason=row["reason"],
                    receive_count=int(row["receive_count"]),
                    source=row["source"],
                    recorded_at=row["recorded_at"],
                )
                held = found.get(record.message_id)
                if held is None or record.recorded_at >= held.recorded_at:
                    found[record.message_id] = record
        return found

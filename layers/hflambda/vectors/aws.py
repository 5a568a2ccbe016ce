"""AWS backend: chunk vectors in an Amazon S3 Vectors index, the catalogue in DynamoDB.

boto3 only (no LanceDB, no pyarrow). S3 Vectors has no conditional writes, so every
ordering question is decided by DynamoDB's conditional writes on the catalogue item.

**Catalogue item** (``pk = "u#<user_id>"``, ``sk = "d#<document_id>"``): the newest
``version`` (``hflambda.messages.version_key``), ``ts``, ``deleted`` (a tombstone), the
text (zlib, binary), the metadata (JSON, stored once per document), ``chunks``, ``revs``
(the model revisions whose vectors of ``version`` are complete) and ``vsets``: a registry of
every vector set that may exist in the index for this document (``version|revision|chunks|
registered_ms``). Failure records are items ``pk = "f#<message_id>"`` with a TTL.

**Vector keys** are derived from user, document, version, revision and chunk number (hashes),
so two versions never overwrite each other's vectors and any set can be deleted by key.
Filterable metadata: ``u`` (user id), ``r`` (model revision), ``t`` (the document's
``key=value`` filter terms, ≤ ``document_max_filter_bytes``); non-filterable: ``d``
(document id), ``v`` (version), ``c``/``s``/``e`` (chunk number and offsets), ``x`` (chunk text).

**Write path** of an upsert at version V (per document, in this order):

1. register ``V|rev|n`` in ``vsets`` (condition: the stored version is not newer than V);
2. PutVectors of all chunks of V;
3. make V current (condition: the stored version is older than V, or equal and this
   revision is new) — only now can a search return it;
4. garbage-collect: DeleteVectors of every registered set older than the current version
   (entries older than ``grace`` are then dropped from ``vsets``; younger ones are kept
   because their writer may still be putting, and are deleted again by the next write,
   redelivery or ``maintain``). A writer whose step 3 lost (a newer version is current)
   deletes its own set. A delete is a tombstone at V and the garbage collection of all sets.

**Invariant.** The catalogue names version V current only after all vectors of V were
written (step 2 before 3), and a search returns a vector only when its version and
revision equal the catalogue's current ones, read with a strongly consistent BatchGetItem
after the query (a tombstone returns nothing). So whatever the interleaving of writers,
redeliveries or crashes between the steps, a search never shows a stale or deleted
document — not even until the next write: stale vectors are invisible at once and only
cost space until collected. A crash between 2 and 3 leaves the older version current (still
correct) until the redelivery; one between 3 and 4 leaves invisible garbage that the next
write, redelivery or ``maintain`` removes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from hflambda.errors import BadInput
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

__all__ = ["NON_FILTERABLE_KEYS", "S3VectorsStore", "vector_key"]

NON_FILTERABLE_KEYS = ["d", "v", "c", "s", "e", "x"]
"""Metadata keys the index must declare non-filterable at creation (CDK and dev create it so)."""

PUT_LIMIT = 500  # vectors per PutVectors / DeleteVectors
TOP_K_LIMIT = 100  # QueryVectors topK
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
GRACE_MS = 15 * 60 * 1000  # a Lambda invocation runs at most 15 minutes
MAX_TEXT_BYTES = 380_000  # DynamoDB items are at most 400 KB
FAILURE_TTL_DAYS = 14


NAMES = {
    f"#{n}": n
    for n in (
        "version",
        "ts",
        "deleted",
        "text",
        "metadata",
        "chunks",
        "revs",
        "vsets",
        "updated_at",
        "created_at",
    )
}


def _h(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:24]


def vector_key(user_id: str, document_id: str, version: str, revision: str, chunk: int) -> str:
    """The S3 Vectors key of one chunk vector (≤ 1,024 characters whatever the ids)."""
    return f"{_h(user_id + chr(0) + document_id)}.{_h(version)}.{_h(revision)}.{chunk}"


@dataclass(frozen=True)
class _Entry:
    version: str
    revision: str
    chunks: int
    registered: int

    @classmethod
    def parse(cls, raw: str) -> _Entry:
        version, revision, chunks, registered = raw.rsplit("|", 3)
        return cls(version, revision, int(chunks), int(registered))

    def raw(self) -> str:
        return f"{self.version}|{self.revision}|{self.chunks}|{self.registered}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _pk(user_id: str) -> str:
    return f"u#{user_id}"


def _sk(document_id: str) -> str:
    return f"d#{document_id}"


def _key(key: DocKey) -> dict[str, Any]:
    return {"pk": {"S": _pk(key[0])}, "sk": {"S": _sk(key[1])}}


def _json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _ms_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _filter_expression(user_id: str, space: VectorSpace, flt: MetadataFilter | None) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = [{"u": {"$eq": user_id}}, {"r": {"$eq": space.revision}}]
    for any_of in filter_tags(flt):
        clauses.append({"t": {"$in": any_of}})
    return {"$and": clauses}


class S3VectorsStore(VectorStore, FailureLedger):
    """The vector store on S3 Vectors (vectors) + DynamoDB (catalogue, failures)."""

    def __init__(
        self,
        *,
        bucket: str | None,
        index: str,
        table: str,
        s3vectors: Any = None,
        dynamodb: Any = None,
        grace_ms: int = GRACE_MS,
        workers: int = 8,
    ) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "adaptive", "max_attempts": 8}, max_pool_connections=max(10, workers * 2)
        )
        self.s3v = s3vectors or boto3.client("s3vectors", config=config)
        self.ddb = dynamodb or boto3.client("dynamodb", config=config)
        if index.startswith(
            "arn:"
        ):  # arn:<partition>:s3vectors:<region>:<account>:bucket/<bucket>/index/<index>
            _, bucket, _, index = index.split(":", 5)[5].split("/", 3)
        self.bucket = bucket
        self.index = index
        self.table = table
        self.uri = f"s3vectors://{bucket}/{index}?table={table}"
        self.grace_ms = grace_ms
        self.workers = workers
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        for client in (self.s3v, self.ddb):
            client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.workers)

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with self._pool() as pool:
            return list(pool.map(fn, items))

    @staticmethod
    def _conditional_failed(exc: Exception) -> bool:
        return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"

    # --- catalogue reads -----------------------------------------------------------------

    def _items(self, keys: Iterable[DocKey], projection: str | None = None) -> dict[DocKey, dict[str, Any]]:
        """Catalogue items by key (strongly consistent BatchGetItem, unprocessed keys retried)."""
        wanted = sorted(set(keys))
        found: dict[DocKey, dict[str, Any]] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                "Keys": [_key(k) for k in wanted[start : start + BATCH_GET_LIMIT]],
                "ConsistentRead": True,
            }
            if projection:
                request["ProjectionExpression"] = projection
                request["ExpressionAttributeNames"] = {n: NAMES[n] for n in NAMES if n in projection}
            pending: dict[str, Any] = {self.table: request}
            delay = 0.05
            while pending:
                answer = self.ddb.batch_get_item(RequestItems=pending)
                for item in answer.get("Responses", {}).get(self.table, []):
                    found[(item["pk"]["S"][2:], item["sk"]["S"][2:])] = item
                pending = answer.get("UnprocessedKeys") or {}
                if pending:
                    time.sleep(delay)
                    delay = min(1.0, delay * 2)
        return found

    @staticmethod
    def _version(item: Mapping[str, Any] | None) -> str | None:
        if item is None or "version" not in item:
            return None
        return str(item["version"]["S"])

    @staticmethod
    def _entries(item: Mapping[str, Any] | None) -> list[_Entry]:
        if item is None or "vsets" not in item:
            return []
        return [_Entry.parse(raw) for raw in item["vsets"]["SS"]]

    @staticmethod
    def _revs(item: Mapping[str, Any] | None) -> set[str]:
        if item is None or "revs" not in item:
            return set()
        return set(item["revs"]["SS"])

    def _stored(self, key: DocKey, item: Mapping[str, Any]) -> StoredDocument:
        text = zlib.decompress(item["text"]["B"]).decode("utf-8") if "text" in item else ""
        return StoredDocument(
            user_id=key[0],
            document_id=key[1],
            version=str(item["version"]["S"]),
            ts=int(item["ts"]["N"]),
            deleted=bool(item.get("deleted", {}).get("BOOL", False)),
            text=text,
            metadata=json.loads(item["metadata"]["S"]) if "metadata" in item else {},
            chunks=int(item.get("chunks", {}).get("N", "0")),
            created_at=_ms_datetime(int(item.get("created_at", {}).get("N", "0"))),
            updated_at=_ms_datetime(int(item.get("updated_at", {}).get("N", "0"))),
        )

    def get_document(self, user_id: str, document_id: str) -> StoredDocument | None:
        """The catalogue row of one document (tombstones included)."""
        item = self.ddb.get_item(
            TableName=self.table, Key=_key((user_id, document_id)), ConsistentRead=True
        ).get("Item")
        if item is None or "version" not in item:
            return None
        return self._stored((user_id, document_id), item)

    # --- garbage ---------------------------------------------------------------------------

    def _keys_of(self, key: DocKey, entry: _Entry) -> list[str]:
        return [vector_key(key[0], key[1], entry.version, entry.revision, i) for i in range(entry.chunks)]

    def _delete_vectors(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), PUT_LIMIT):
            self.s3v.delete_vectors(
                vectorBucketName=self.bucket, indexName=self.index, keys=list(keys[start : start + PUT_LIMIT])
            )

    def _garbage(self, item: Mapping[str, Any] | None) -> list[_Entry]:
        """Registered sets that can never become current: older than the current version, or
        of the current version in a revision that is not current and registered long ago."""
        current = self._version(item)
        if current is None:
            return []
        revs = self._revs(item)
        deleted = bool(item.get("deleted", {}).get("BOOL", False)) if item else False
        old = _now_ms() - self.grace_ms
        garbage = []
        for entry in self._entries(item):
            older = entry.version < current or (entry.version == current and deleted)
            replaced = entry.version == current and entry.revision not in revs and entry.registered < old
            if older or replaced:
                garbage.append(entry)
        return garbage

    def _collect(
        self, collect: Mapping[DocKey, list[_Entry]], own: Mapping[DocKey, _Entry] | None = None
    ) -> int:
        """Delete the vectors of ``collect``'s sets; drop registry entries older than the grace
        (and ``own``: sets this writer registered and lost, which nobody else will put)."""
        own = own or {}
        work = [(key, entries) for key, entries in collect.items() if entries]
        if not work:
            return 0
        keys = [k for key, entries in work for entry in entries for k in self._keys_of(key, entry)]
        self._delete_vectors(keys)
        old = _now_ms() - self.grace_ms
        expired = [
            (key, [e.raw() for e in entries if e.registered < old or e == own.get(key)])
            for key, entries in work
        ]

        def drop(job: tuple[DocKey, list[str]]) -> None:
            key, raws = job
            if raws:
                self.ddb.update_item(
                    TableName=self.table,
                    Key=_key(key),
                    UpdateExpression="DELETE #vsets :g",
                    ExpressionAttributeNames={"#vsets": "vsets"},
                    ExpressionAttributeValues={":g": {"SS": raws}},
                )

        self._map(drop, [job for job in expired if job[1]])
        return len(keys)

    # --- writes ------------------------------------------------------------------------------

    def plan(self, ops: Sequence[WriteOp], space: VectorSpace) -> Plan:
        """Superseded and duplicate ops; also collects garbage vectors of the documents it reads."""
        items = self._items(op.key for op in ops)
        skips = Plan()
        skips.snapshot = items
        for op in ops:
            item = items.get(op.key)
            stored = self._version(item)
            if stored is None:
                continue
            if stored > op.version:
                skips[op.key] = "superseded"
            elif stored == op.version:
                deleted = bool(item.get("deleted", {}).get("BOOL", False)) if item else False
                if op.deleted == deleted and (op.deleted or space.revision in self._revs(item)):
                    skips[op.key] = "duplicate"
        garbage = {key: self._garbage(item) for key, item in items.items()}
        try:
            self._collect({key: garbage[key] for key in skips if garbage.get(key)})
        except Exception as exc:  # cleanup is best effort here; the next write retries it
            logger.warning(
                "vector garbage collection failed", extra={"error": f"{type(exc).__name__}: {exc}"}
            )
        return skips

    def apply(self, ops: Sequence[WriteOp], space: VectorSpace, plan: Plan | None = None) -> ApplyResult:
        """Write a batch newest-wins (see the module docstring for the protocol and invariant)."""
        result = ApplyResult()
        newest: dict[DocKey, WriteOp] = {}
        for op in ops:
            if op.key not in newest or op.version > newest[op.key].version:
                newest[op.key] = op
        result.superseded.extend(op.key for op in ops if newest[op.key] is not op)
        if not newest:
            return result
        upserts = [op for op in newest.values() if isinstance(op, UpsertOp)]
        for op in upserts:
            for chunk in op.chunks:
                if chunk.vector.shape != (space.dimensions,):
                    raise ValueError(
                        f"chunk {chunk.chunk} of {op.document_id!r} has a vector of shape {chunk.vector.shape}, "
                        f"expected ({space.dimensions},)"
                    )
        texts: dict[DocKey, bytes] = {}
        for op in list(upserts):
            texts[op.key] = zlib.compress(op.text.encode("utf-8"), 6)
            if len(texts[op.key]) > MAX_TEXT_BYTES:
                result.failed[op.key] = (
                    f"document text is {len(texts[op.key])} bytes compressed; the catalogue holds at most {MAX_TEXT_BYTES}"
                )
                upserts.remove(op)
        now = _now_ms()
        entries = {op.key: _Entry(op.version, space.revision, len(op.chunks), now) for op in upserts}
        # 1. register the vector sets (a newer stored version: superseded, nothing written)
        refused = self._map(lambda op: self._register(op, entries[op.key]), upserts)
        live_upserts = [op for op, newer in zip(upserts, refused, strict=True) if newer is None]
        collect: dict[DocKey, list[_Entry]] = {}
        for op, newer in zip(upserts, refused, strict=True):
            if newer is not None:
                result.superseded.append(op.key)
                collect[op.key] = self._garbage(newer)  # e.g. a dead writer's older vectors
        # 2. the vectors
        self._put(live_upserts, space)
        result.chunks_written = sum(len(op.chunks) for op in live_upserts)
        # 3. make current (conditional), 4. collect garbage
        committing: list[WriteOp] = [
            *live_upserts,
            *(op for op in newest.values() if not isinstance(op, UpsertOp)),
        ]
        outcomes = self._map(
            lambda op: self._commit(op, space, entries.get(op.key), texts.get(op.key, b""), now), committing
        )
        lost: dict[DocKey, _Entry] = {}
        for op, (state, item, own) in zip(committing, outcomes, strict=True):
            if state == "superseded":
                result.superseded.append(op.key)
            else:
                (result.deleted if op.deleted else result.written).append(op.key)
            garbage = self._garbage(item)
            if own is not None:
                garbage.append(own)
                lost[op.key] = own
            collect[op.key] = garbage
        result.repaired = self._collect(collect, lost)
        return result

    def _register(self, op: UpsertOp, entry: _Entry) -> dict[str, Any] | None:
        """Register ``entry``; None when done, else the newer item that supersedes ``op``."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=_key(op.key),
                UpdateExpression="ADD #vsets :e",
                ConditionExpression="attribute_not_exists(#version) OR #version <= :v",
                ExpressionAttributeNames={"#vsets": "vsets", "#version": "version"},
                ExpressionAttributeValues={":e": {"SS": [entry.raw()]}, ":v": {"S": op.version}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if self._conditional_failed(exc):
                return dict(getattr(exc, "response", {}).get("Item") or {})
            raise
        return None

    def _put(self, ops: Sequence[UpsertOp], space: VectorSpace) -> None:
        vectors: list[dict[str, Any]] = []
        for op in ops:
            tags = metadata_tags(op.metadata)
            for chunk in op.chunks:
                vectors.append(
                    {
                        "key": vector_key(
                            op.user_id, op.document_id, op.version, space.revision, chunk.chunk
                        ),
                        "data": {"float32": [float(x) for x in np.asarray(chunk.vector, dtype=np.float32)]},
                        "metadata": {
                            "u": op.user_id,
                            "r": space.revision,
                            "t": tags,
                            "d": op.document_id,
                            "v": op.version,
                            "c": chunk.chunk,
                            "s": chunk.start,
                            "e": chunk.end,
                            "x": chunk.text,
                        },
                    }
                )
        batches = [vectors[i : i + PUT_LIMIT] for i in range(0, len(vectors), PUT_LIMIT)]
        self._map(
            lambda batch: self.s3v.put_vectors(
                vectorBucketName=self.bucket, indexName=self.index, vectors=batch
            ),
            batches,
        )

    def _commit(
        self, op: WriteOp, space: VectorSpace, entry: _Entry | None, text: bytes, now: int
    ) -> tuple[str, dict[str, Any], _Entry | None]:
        """Make ``op`` current; answers (state, the item after the write, own garbage)."""
        values: dict[str, Any] = {":v": {"S": op.version}, ":ts": {"N": str(op.ts)}, ":now": {"N": str(now)}}
        if isinstance(op, UpsertOp):
            values |= {
                ":f": {"BOOL": False},
                ":text": {"B": text},
                ":meta": {"S": _json(op.metadata)},
                ":n": {"N": str(len(op.chunks))},
                ":rev": {"SS": [space.revision]},
            }
            update = (
                "SET #version = :v, #ts = :ts, #deleted = :f, #text = :text, #metadata = :meta, #chunks = :n, "
                "#revs = :rev, #updated_at = :now, #created_at = if_not_exists(#created_at, :now)"
            )
            # equal version: only a new revision of the same version (a reindex) may write
            condition = "attribute_not_exists(#version) OR #version < :v OR (#version = :v AND NOT contains(#revs, :r))"
            values[":r"] = {"S": space.revision}
        else:
            values |= {":t": {"BOOL": True}, ":zero": {"N": "0"}}
            update = (
                "SET #version = :v, #ts = :ts, #deleted = :t, #chunks = :zero, #updated_at = :now, #created_at = :now "
                "REMOVE #text, #metadata, #revs"
            )
            condition = "attribute_not_exists(#version) OR #version < :v"
        names = {n: NAMES[n] for n in NAMES if n in update or n in condition}
        try:
            answer = self.ddb.update_item(
                TableName=self.table,
                Key=_key(op.key),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if not self._conditional_failed(exc):
                raise
            old = getattr(exc, "response", {}).get("Item") or {}
            if self._version(old) == op.version:
                return "written", old, None  # a concurrent writer of this very version won
            return "superseded", old, entry  # a newer version is current: our set is garbage
        return "written", answer.get("Attributes", {}), None

    def reindex(self, ops: Sequence[UpsertOp], space: VectorSpace) -> ApplyResult:
        """Write vectors in ``space`` for documents whose catalogue version is still ``op.version``."""
        current = self._items(op.key for op in ops)
        todo = []
        result = ApplyResult()
        for op in ops:
            item = current.get(op.key)
            if item is None or self._version(item) != op.version or item.get("deleted", {}).get("BOOL"):
                result.superseded.append(op.key)
            else:
                todo.append(op)
        applied = self.apply(todo, space)
        result.written += applied.written
        result.superseded += applied.superseded
        result.chunks_written = applied.chunks_written
        result.repaired = applied.repaired
        result.failed.update(applied.failed)
        return result

    # --- reads ---------------------------------------------------------------------------

    def search(
        self,
        user_id: str,
        vector: np.ndarray,
        *,
        space: VectorSpace,
        top_k: int = 10,
        filter: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        """Nearest current documents of ``user_id`` (one hit per document, validated against the catalogue)."""
        if top_k <= 0:
            return []
        query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query_vector.shape != (space.dimensions,):
            raise BadInput(
                f"query vector has {query_vector.shape[0]} dimensions, the space has {space.dimensions}"
            )
        expression = _filter_expression(user_id, space, filter)
        k = min(TOP_K_LIMIT, max(top_k * 4, 20))
        while True:
            answer = self.s3v.query_vectors(
                vectorBucketName=self.bucket,
                indexName=self.index,
                topK=k,
                queryVector={"float32": [float(x) for x in query_vector]},
                filter=expression,
                returnMetadata=True,
                returnDistance=True,
            )
            rows = answer.get("vectors", [])
            items = self._items(
                {(user_id, row["metadata"]["d"]) for row in rows},
                projection="pk, sk, #version, #deleted, #metadata, #ts",
            )
            best: dict[str, dict[str, Any]] = {}
            for row in rows:
                document_id = row["metadata"]["d"]
                item = items.get((user_id, document_id))
                if (
                    item is None
                    or self._version(item) != row["metadata"]["v"]
                    or item.get("deleted", {}).get("BOOL")
                ):
                    continue  # not the current version (or deleted): never shown
                if document_id not in best or row["distance"] < best[document_id]["distance"]:
                    best[document_id] = row
            hits = []
            for document_id, row in best.items():
                item = items[(user_id, document_id)]
                meta = row["metadata"]
                hits.append(
                    SearchHit(
                        document_id=document_id,
                        score=float(1.0 - row["distance"]),
                        chunk=int(meta["c"]),
                        text=str(meta["x"]),
                        start=int(meta["s"]),
                        end=int(meta["e"]),
                        metadata=json.loads(item["metadata"]["S"]) if "metadata" in item else {},
                        ts=int(item["ts"]["N"]),
                    )
                )
            if len(hits) >= top_k or len(rows) < k or k >= TOP_K_LIMIT:
                break
            k = TOP_K_LIMIT
        hits.sort(key=lambda h: -h.score)
        return hits[:top_k]

    def _list_vectors(self, *, metadata: bool = True) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            request: dict[str, Any] = {
                "vectorBucketName": self.bucket,
                "indexName": self.index,
                "returnMetadata": metadata,
                "maxResults": 1000,
            }
            if token:
                request["nextToken"] = token
            answer = self.s3v.list_vectors(**request)
            yield from answer.get("vectors", [])
            token = answer.get("nextToken")
            if not token:
                return

    def count_chunks(self, space: VectorSpace, *, user_id: str | None = None) -> int:
        """Vectors of ``space`` in the index (optionally of one user): a full ListVectors, for checks."""
        return sum(
            1
            for v in self._list_vectors()
            if v["metadata"].get("r") == space.revision
            and (user_id is None or v["metadata"].get("u") == user_id)
        )

    def _scan(self, **options: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            request: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True, **options}
            if start:
                request["ExclusiveStartKey"] = start
            answer = self.ddb.scan(**request)
            yield from answer.get("Items", [])
            start = answer.get("LastEvaluatedKey")
            if not start:
                return

    def stale_documents(self, space: VectorSpace, *, batch_size: int = 256) -> Iterator[list[StoredDocument]]:
        """Live documents whose current version has no vectors in ``space``, in pages."""
        page: list[StoredDocument] = []
        for item in self._scan():
            if (
                not item["pk"]["S"].startswith("u#")
                or "version" not in item
                or item.get("deleted", {}).get("BOOL")
            ):
                continue
            if space.revision in self._revs(item):
                continue
            page.append(self._stored((item["pk"]["S"][2:], item["sk"]["S"][2:]), item))
            if len(page) >= batch_size:
                yield page
                page = []
        if page:
            yield page

    def maintain(self, space: VectorSpace | None = None) -> MaintenanceReport:
        """Collect garbage vector sets of every document (failure records expire by TTL)."""
        started = time.perf_counter()
        report = MaintenanceReport()
        documents = 0
        collect: dict[DocKey, list[_Entry]] = {}
        for item in self._scan():
            if not item["pk"]["S"].startswith("u#"):
                continue
            documents += 1
            garbage = self._garbage(item)
            if garbage:
                collect[(item["pk"]["S"][2:], item["sk"]["S"][2:])] = garbage
        report.rows["documents"] = documents
        report.rows["garbage_vectors_deleted"] = self._collect(collect)
        report.seconds = time.perf_counter() - started
        return report

    # --- failures --------------------------------------------------------------------------

    def record_failures(self, failures: Iterable[FailureRecord]) -> None:
        """Keep failure reasons as items with a TTL (best effort: never raises)."""
        records = list(failures)
        try:
            expires = int(time.time()) + FAILURE_TTL_DAYS * 86400
            for start in range(0, len(records), 25):
                requests = [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": f"f#{r.message_id}"},
                                "sk": {"S": f"f#{r.recorded_at.timestamp():017.6f}"},
                                "reason": {"S": r.reason[:4000]},
                                "receive_count": {"N": str(r.receive_count)},
                                "source": {"S": r.source or "-"},
                                "recorded_at": {"N": str(int(r.recorded_at.timestamp() * 1000))},
                                "expires_at": {"N": str(expires)},
                            }
                        }
                    }
                    for r in records[start : start + 25]
                ]
                pending: dict[str, Any] = {self.table: requests}
                while pending:
                    pending = self.ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        except Exception as exc:  # recording must never turn a failed record into a crashed batch
            logger.warning(
                "could not record failure reasons", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    def failure_reasons(self, message_ids: Iterable[str]) -> dict[str, FailureRecord]:
        """Latest recorded failure per message id."""
        found: dict[str, FailureRecord] = {}
        for message_id in sorted(set(message_ids)):
            answer = self.ddb.query(
                TableName=self.table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": f"f#{message_id}"}},
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
            for item in answer.get("Items", []):
                found[message_id] = FailureRecord(
                    message_id=message_id,
                    reason=item["reason"]["S"],
                    receive_count=int(item["receive_count"]["N"]),
                    source="" if item["source"]["S"] == "-" else item["source"]["S"],
                    recorded_at=_ms_datetime(int(item["recorded_at"]["N"])),
                )
        return found


def create_resources(
    s3vectors: Any, dynamodb: Any, *, bucket: str, index: str, table: str, dimensions: int
) -> None:
    """Create the vector bucket, index and table as CDK does (dev stack, tests, rehearsal)."""
    try:
        s3vectors.create_vector_bucket(vectorBucketName=bucket)
    except Exception as exc:
        if "Exists" not in type(exc).__name__ and "Conflict" not in str(exc):
            raise
    existing = {i["indexName"] for i in s3vectors.list_indexes(vectorBucketName=bucket).get("indexes", [])}
    if index not in existing:
        s3vectors.create_index(
            vectorBucketName=bucket,
            indexName=index,
            dataType="float32",
            dimension=dimensions,
            distanceMetric="cosine",
            metadataConfiguration={"nonFilterableMetadataKeys": NON_FILTERABLE_KEYS},
        )
    try:
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except Exception as exc:
        if "ResourceInUse" not in str(exc):
            raise

"""1,000 index messages through SQS (moto), the local event source and the real index
handler with the real model: upserts, updates, deletes, duplicates, 2% invalid bodies, and
a handler that crashes on 5% of invocations (half before doing anything, half after writing
but before answering, so the batch is redelivered after its effects landed).

After draining: every valid document is searchable exactly once with its newest text,
deleted ones are gone, every invalid message is in the DLQ with its reason recorded, and
nothing else is.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from hflambda.dlq import DeadLetters
from hflambda.poller import Poller
from hflambda.vectors import VectorSpace, VectorStore, get_vector_store
from hflambda.vectors.aws import S3VectorsStore
from hflambda.vectors.lance import LanceVectorStore
from tests.fixtures.aws import make_aws_vectors, make_queues, queue_depth
from tests.fixtures.models import Warmed, clear_caches, fresh_module

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# 1,000 keeps make test within its 10 minutes on 2 cores; make soak runs the long soak
TOTAL = 1000
USERS = [f"user-{i}" for i in range(5)]
WORDS = [
    "river",
    "stone",
    "lantern",
    "maple",
    "orbit",
    "violet",
    "harbor",
    "quartz",
    "meadow",
    "ember",
    "falcon",
    "cedar",
    "tundra",
    "pixel",
    "saffron",
    "glacier",
]


def stored_chunks(
    store: VectorStore, keys: list[tuple[str, str]], space: VectorSpace
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every stored chunk of ``space`` by document: ``{"text", "version"}`` (either backend)."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if isinstance(store, S3VectorsStore):
        for v in store._list_vectors():
            meta = v["metadata"]
            if meta["r"] == space.revision:
                by_key.setdefault((meta["u"], meta["d"]), []).append(
                    {"text": meta["x"], "version": meta["v"]}
                )
        return by_key
    assert isinstance(store, LanceVectorStore)
    for row in store.chunk_rows(keys, space):
        by_key.setdefault((row["user_id"], row["document_id"]), []).append(row)
    return by_key


@dataclass
class Op:
    user: str
    doc: str
    ts: int
    body: str
    text: str | None  # None: a delete


class CrashingHandler:
    """The real handler, crashing on a seeded 5% of invocations (before or after its work)."""

    def __init__(self, handler: Any, rate: float = 0.05, seed: int = 5) -> None:
        self.handler = handler
        self.rate = rate
        self.rng = random.Random(seed)
        self.crashes = {"before": 0, "after": 0}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        roll = self.rng.random()
        if roll < self.rate / 2:
            self.crashes["before"] += 1
            raise RuntimeError("injected crash before processing")
        response = self.handler(event, context)
        if roll < self.rate:
            self.crashes["after"] += 1
            raise RuntimeError("injected crash after processing")
        return response


def build_workload(rng: random.Random) -> tuple[list[str], dict[tuple[str, str], Op], list[str]]:
    """Bodies in delivery order, the newest op per document, and the invalid bodies."""
    ops: list[Op] = []
    clock = 1_700_000_000_000
    docs: list[tuple[str, str]] = []

    def text_for(user: str, doc: str, n: int) -> str:
        return f"{user} {doc} rev {n}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))

    def upsert(user: str, doc: str, n: int) -> Op:
        nonlocal clock
        clock += rng.randint(1, 5)
        text = text_for(user, doc, n)
        body = {
            "v": 1,
            "op": "upsert",
            "user_id": user,
            "ts": clock,
            "document": {"id": doc, "text": text, "metadata": {"rev": n}},
        }
        return Op(user, doc, clock, json.dumps(body), text)

    n_invalid = TOTAL * 2 // 100
    n_dupes = TOTAL * 12 // 100
    n_deletes = TOTAL * 9 // 100
    n_updates = TOTAL * 21 // 100
    n_new = TOTAL - n_invalid - n_dupes - n_deletes - n_updates
    for i in range(n_new):
        key = (USERS[i % len(USERS)], f"doc-{i}")
        docs.append(key)
        ops.append(upsert(*key, 1))
    revisions = dict.fromkeys(docs, 1)
    for _ in range(n_updates):
        key = rng.choice(docs)
        revisions[key] += 1
        ops.append(upsert(*key, revisions[key]))
    for key in rng.sample(docs, n_deletes):
        clock += rng.randint(1, 5)
        body = json.dumps({"v": 1, "op": "delete", "user_id": key[0], "ts": clock, "document_id": key[1]})
        ops.append(Op(key[0], key[1], clock, body, None))
    # updates after some deletes bring documents back (newer than the delete)
    ops += [upsert(*key, revisions[key] + 1) for key in rng.sample(docs, 30)]
    newest: dict[tuple[str, str], Op] = {}
    for op in ops:
        if (op.user, op.doc) not in newest or op.ts > newest[(op.user, op.doc)].ts:
            newest[(op.user, op.doc)] = op
    bodies = [op.body for op in ops] + [op.body for op in rng.sample(ops, n_dupes - 30)]
    invalid = [
        rng.choice(
            [
                "{not json",
                json.dumps(
                    {"v": 2, "op": "upsert", "user_id": "u", "document": {"id": "x", "text": "future schema"}}
                ),
                json.dumps({"v": 1, "op": "upsert", "user_id": "u", "document": {"id": "x", "text": "   "}}),
                json.dumps({"v": 1, "op": "rename", "user_id": "u"}),
                json.dumps({"v": 1, "op": "delete", "user_id": "u"}),
            ]
        )
        + " " * i  # distinct bodies
        for i in range(n_invalid)
    ]
    bodies += invalid
    rng.shuffle(bodies)
    assert len(bodies) == TOTAL
    return bodies, newest, invalid


@pytest.fixture(params=["local", "aws"])
def soak_env(
    request: pytest.FixtureRequest,
    serve_env: Warmed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    aws_env: str,
) -> Iterator[Any]:
    """The index handler on the local backend (LanceDB folder) or the AWS one (S3 Vectors +
    DynamoDB on the moto server with the QueryVectors fake)."""
    monkeypatch.setenv("HFLAMBDA_VECTOR_URI", str(tmp_path / "vectors"))
    if request.param == "aws":
        for name, value in make_aws_vectors(dimensions=384).items():
            monkeypatch.setenv(name, value)
    else:
        monkeypatch.setenv("HFLAMBDA_VECTOR_BACKEND", "local")
    clear_caches()
    yield fresh_module("functions.index.handler")
    clear_caches()


@pytest.mark.timeout(1200)  # 1,000 messages through moto on a shared 2-core machine
def test_soak_1000_messages(soak_env: Any, sqs: Any) -> None:
    started = time.monotonic()
    rng = random.Random(2024)
    bodies, newest, invalid = build_workload(rng)
    queues = make_queues(sqs, visibility_timeout=1, max_receive_count=5)
    # applications emit while the index function runs: feed the queue as it drains (moto's
    # SQS also slows down linearly with queue depth, which real SQS does not)
    sent: list[int] = []

    def produce() -> None:
        client = boto3.client("sqs")
        for start in range(0, len(bodies), 10):
            while queue_depth(client, queues.queue_url) > 100:
                time.sleep(0.05)
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
            if not client.send_message_batch(QueueUrl=queues.queue_url, Entries=entries).get("Failed"):
                sent.append(len(entries))

    producer = threading.Thread(target=produce, name="soak-producer")
    producer.start()
    handler = CrashingHandler(soak_env.handler)
    poller = Poller(queues.queue_url, handler, sqs_client=sqs, wait_seconds=1)
    while producer.is_alive():
        poller.poll_once()
    producer.join()
    assert sum(sent) == TOTAL
    stats = poller.drain(timeout=120)
    drained = time.monotonic() - started
    assert handler.crashes["before"] > 0 and handler.crashes["after"] > 0
    assert stats.function_errors == sum(handler.crashes.values())

    # the DLQ holds exactly the invalid messages, each with its recorded reason
    store = get_vector_store()
    letters = DeadLetters(sqs, queues.queue_url, store=store).peek()
    assert sorted(letter.body for letter in letters) == sorted(invalid)
    assert all(
        letter.reason_source == "recorded" and letter.reason.startswith("invalid message")
        for letter in letters
    )
    assert queue_depth(sqs, queues.queue_url) == 0

    report = store.maintain()  # the scheduled step (local: compaction + scalar indexes; aws: garbage vectors)
    assert (
        "vchunks_384" in report.optimized
        if isinstance(store, LanceVectorStore)
        else report.rows["documents"] == len(newest)
    )
    embedder = soak_env.indexer.embedder()
    space = VectorSpace.of(embedder)
    live = {key: op for key, op in newest.items() if op.text is not None}
    deleted = {key for key, op in newest.items() if op.text is None}
    assert len(live) > TOTAL * 45 // 100 and len(deleted) > TOTAL // 20  # a real mix, whatever TOTAL
    by_key = stored_chunks(store, list(newest), space)
    assert not set(by_key) & deleted, "deleted documents still have chunks"
    for key, op in live.items():
        chunks = by_key.get(key)
        assert chunks is not None and len(chunks) == 1, (key, chunks)  # short texts: one chunk, exactly once
        assert chunks[0]["text"] == op.text and chunks[0]["version"] == store.get_document(*key).version  # type: ignore[union-attr]

    # searchable: each live document is the top hit for its own text, within its user only
    keys = list(live)
    vectors = embedder.embed([live[k].text for k in keys])  # type: ignore[misc]
    for key, vector in zip(keys, vectors, strict=True):
        hits = store.search(key[0], vector, space=space, top_k=3)
        assert hits[0].document_id == key[1] and hits[0].text == live[key].text, (key, hits[:1])
        assert len({h.document_id for h in hits}) == len(hits)
    for user, doc in list(deleted)[:50]:
        op_text = f"{user} {doc}"
        hits = store.search(user, embedder.embed([op_text])[0], space=space, top_k=10)
        assert doc not in {h.document_id for h in hits}
    print(
        f"\nsoak ({type(store).__name__}): drained {TOTAL} messages in {drained:.1f} s; total {time.monotonic() - started:.1f} s; {stats}; crashes {handler.crashes}"
    )

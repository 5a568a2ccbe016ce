"""The batch indexer with a fake embedder on a local store: per-record outcomes and reasons."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from hflambda.errors import ModelNotReady
from hflambda.indexing import Indexer, QueueRecord
from hflambda.settings import Settings
from hflambda.vectors.lance import LanceVectorStore
from hflambda.vectors.ledger import FailureRecord
from hflambda.vectors.types import VectorSpace
from tests.fakes.embedder import FakeEmbedder

pytestmark = pytest.mark.integration


def body(
    op: str = "upsert",
    user: str = "alice",
    doc: str = "d1",
    text: str = "hello world",
    ts: int | None = 1000,
    **extra: object,
) -> str:
    message: dict[str, object] = {"v": 1, "op": op, "user_id": user}
    if ts is not None:
        message["ts"] = ts
    if op == "upsert":
        message["document"] = {"id": doc, "text": text, "metadata": extra.pop("metadata", {})}
    else:
        message["document_id"] = doc
    message.update(extra)
    return json.dumps(message)


def record(message_id: str, text: str, *, sent: int = 500, receives: int = 1) -> QueueRecord:
    return QueueRecord(
        message_id=message_id,
        body=text,
        sent_ts=sent,
        receive_count=receives,
        source="arn:aws:sqs:us-east-1:0:q",
    )


@pytest.fixture
def store(tmp_path: Path) -> LanceVectorStore:
    return LanceVectorStore(str(tmp_path / "vectors"))


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


def make_indexer(store: LanceVectorStore, embedder: FakeEmbedder, **settings: object) -> Indexer:
    return Indexer(store, lambda: embedder, Settings(chunk_tokens=20, chunk_overlap=5, **settings))  # type: ignore[arg-type]


def space(embedder: FakeEmbedder) -> VectorSpace:
    return VectorSpace.of(embedder)


def test_valid_and_invalid_records_in_one_batch(store: LanceVectorStore, embedder: FakeEmbedder) -> None:
    indexer = make_indexer(store, embedder)
    outcome = indexer.index(
        [
            record("m1", body(doc="d1", text="apples and pears")),
            record("m2", "{not json"),
            record("m3", body(doc="d2", text="x", op="merge")),
            record("m4", body(op="delete", doc="d9")),
            record("m5", body(doc="d3", text="bananas")),
        ]
    )
    assert set(outcome.failures) == {"m2", "m3"}
    assert outcome.failures["m2"].startswith("invalid message: body is not JSON")
    assert "op must be" in outcome.failures["m3"]
    assert (outcome.written, outcome.deleted) == (2, 1)
    hits = store.search("alice", embedder.embed(["apples"])[0], space=space(embedder))
    assert hits[0].document_id == "d1"
    # the reasons are kept for `hflambda dlq list`
    recorded = store.failure_reasons(["m2", "m3", "m1"])
    assert set(recorded) == {"m2", "m3"} and recorded["m2"].source == "arn:aws:sqs:us-east-1:0:q"


class MemoryLedger:
    """A failure ledger in memory: all the indexer needs to record reasons."""

    def __init__(self) -> None:
        self.records: list[FailureRecord] = []

    def record_failures(self, failures: Iterable[FailureRecord]) -> None:
        self.records.extend(failures)

    def failure_reasons(self, message_ids: Iterable[str]) -> dict[str, FailureRecord]:
        wanted = set(message_ids)
        return {r.message_id: r for r in self.records if r.message_id in wanted}


def test_failure_reasons_go_to_the_ledger_it_is_given(
    store: LanceVectorStore, embedder: FakeEmbedder
) -> None:
    ledger = MemoryLedger()
    indexer = Indexer(store, lambda: embedder, Settings(), ledger=ledger)  # type: ignore[arg-type, return-value]
    outcome = indexer.index([record("m1", "{not json", receives=3), record("m2", body(doc="d1"))])
    assert set(outcome.failures) == {"m1"} and outcome.written == 1
    assert [(r.message_id, r.receive_count, r.source) for r in ledger.records] == [
        ("m1", 3, "arn:aws:sqs:us-east-1:0:q")
    ]
    assert ledger.records[0].reason.startswith("invalid message: body is not JSON")
    assert store.failure_reasons(["m1"]) == {}  # not also in the store's own ledger


def test_all_chunks_of_a_batch_are_embedded_together_in_bounded_groups(
    store: LanceVectorStore, embedder: FakeEmbedder
) -> None:
    indexer = make_indexer(store, embedder, index_embed_group=7)
    long_text = " ".join(f"w{i}" for i in range(120))
    outcome = indexer.index(
        [record(f"m{i}", body(doc=f"d{i}", text=long_text if i == 0 else f"short {i}")) for i in range(4)]
    )
    assert outcome.failures == {}
    assert outcome.chunks > 4
    assert sum(embedder.calls) == outcome.chunks and max(embedder.calls) <= 7
    rows = store.chunk_rows([("alice", "d0")], space(embedder))
    assert len(rows) == outcome.chunks - 3
    for row in rows:
        assert long_text[row["start"] : row["end"]] == row["text"]


def test_redeliveries_and_older_messages_are_acknowledged_without_embedding(
    store: LanceVectorStore, embedder: FakeEmbedder
) -> None:
    indexer = make_indexer(store, embedder)
    indexer.index([record("m1", body(ts=2000, text="current"))])
    calls = len(embedder.calls)
    outcome = indexer.index(
        [record("m2", body(ts=2000, text="current")), record("m3", body(ts=1000, text="older"))]
    )
    assert outcome.failures == {} and outcome.duplicates == 1 and outcome.superseded == 1
    assert len(embedder.calls) == calls
    # in one batch only the newest message per document is embedded
    outcome = indexer.index(
        [
            record("a", body(ts=3000, text="three")),
            record("b", body(ts=4000, text="four")),
            record("c", body(ts=3500, text="x")),
        ]
    )
    assert outcome.written == 1 and outcome.superseded == 2
    assert [r["text"] for r in store.chunk_rows([("alice", "d1")], space(embedder))] == ["four"]


def test_a_message_without_ts_is_ordered_by_its_sent_timestamp(
    store: LanceVectorStore, embedder: FakeEmbedder
) -> None:
    indexer = make_indexer(store, embedder)
    indexer.index([record("late-sent", body(ts=None, text="sent later"), sent=9000)])
    indexer.index([record("early-sent", body(ts=None, text="sent earlier"), sent=8000)])
    assert [r["text"] for r in store.chunk_rows([("alice", "d1")], space(embedder))] == ["sent later"]
    doc = store.get_document("alice", "d1")
    assert doc is not None and doc.ts == 9000


def test_model_not_ready_fails_every_record_with_the_reason(store: LanceVectorStore) -> None:
    def missing() -> FakeEmbedder:
        raise ModelNotReady("embed", "not warmed: CURRENT does not exist; run warmup")

    indexer = Indexer(store, missing, Settings())
    outcome = indexer.index([record("m1", body()), record("m2", "junk")])
    assert (
        outcome.failures["m1"]
        == "embedding model unavailable: Model 'embed' is not ready: not warmed: CURRENT does not exist; run warmup"
    )
    assert outcome.failures["m2"].startswith("invalid message")
    assert outcome.succeeded == 0


def test_one_document_that_cannot_be_embedded_fails_alone(store: LanceVectorStore) -> None:
    embedder = FakeEmbedder(fail_on="poison")
    indexer = make_indexer(store, embedder)
    outcome = indexer.index(
        [record("ok", body(doc="a", text="fine text")), record("bad", body(doc="b", text="poison text"))]
    )
    assert list(outcome.failures) == ["bad"] and "fake embedder refuses" in outcome.failures["bad"]
    assert outcome.written == 1


def test_a_store_failure_fails_the_valid_records(tmp_path: Path, embedder: FakeEmbedder) -> None:
    class BrokenStore(LanceVectorStore):
        def apply(self, ops, space, plan=None):  # type: ignore[no-untyped-def]
            raise OSError("disk full")

    indexer = make_indexer(BrokenStore(str(tmp_path / "v")), embedder)
    outcome = indexer.index([record("m1", body()), record("m2", "junk")])
    assert outcome.failures["m1"] == "vector store write failed: OSError: disk full"
    assert outcome.failures["m2"].startswith("invalid message")

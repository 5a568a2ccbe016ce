"""An index function one user cannot stall: per-document limits, and a per-invocation time
and chunk budget whose overflow is redelivered alone (issue 13, part 3)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from hflambda.indexing import Indexer, QueueRecord
from hflambda.settings import Settings
from hflambda.vectors.lance import LanceVectorStore
from hflambda.vectors.types import VectorSpace
from tests.fakes.embedder import FakeEmbedder

pytestmark = pytest.mark.integration

WORDS = "the cat sat on a mat and the dog ran far away".split()  # one token each


class SlowEmbedder(FakeEmbedder):
    """Costs ``per_text`` seconds per chunk, as a real model would."""

    def __init__(self, per_text: float) -> None:
        super().__init__()
        self.per_text = per_text

    def embed(self, texts: list[str], *, truncate: bool = False) -> np.ndarray:
        time.sleep(self.per_text * len(texts))
        return super().embed(texts, truncate=truncate)


def upsert(user: str, doc: str, text: str, ts: int = 1000, metadata: dict | None = None) -> str:
    return json.dumps(
        {
            "v": 1,
            "op": "upsert",
            "user_id": user,
            "ts": ts,
            "document": {"id": doc, "text": text, "metadata": metadata or {}},
        }
    )


def record(message_id: str, body: str, receives: int = 1) -> QueueRecord:
    return QueueRecord(message_id=message_id, body=body, sent_ts=500, receive_count=receives, source="arn:q")


def long_text(chunks: int, window: int = 20) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(chunks * window))


class Clock:
    """The Lambda context's remaining time for one invocation of ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def __call__(self) -> float:
        return self.deadline - time.monotonic()


@pytest.fixture
def store(tmp_path: Path) -> LanceVectorStore:
    return LanceVectorStore(str(tmp_path / "vectors"))


def searchable(store: LanceVectorStore, embedder: FakeEmbedder, user: str) -> set[str]:
    hits = store.search(
        user, embedder.embed(["alpha one line"])[0], space=VectorSpace.of(embedder), top_k=100
    )
    return {h.document_id for h in hits}


def test_an_abusive_user_delays_nobody_else_beyond_one_batch(store: LanceVectorStore) -> None:
    embedder = SlowEmbedder(per_text=0.002)
    settings = Settings(
        chunk_tokens=20,
        chunk_overlap=0,
        index_embed_group=32,
        index_time_margin_seconds=0.0,
        document_max_chunks=160,
    )
    indexer = Indexer(store, lambda: embedder, settings)  # type: ignore[arg-type, return-value]
    # mallory: three documents at the chunk limit, one far over the character limit
    mallory = [record(f"m{i}", upsert("mallory", f"big{i}", long_text(150))) for i in range(3)]
    mallory.append(record("m-huge", upsert("mallory", "huge", "x " * 125_000)))
    others = [record(f"o{i}", upsert(f"user{i}", "note", f"alpha one line from user {i}")) for i in range(20)]
    batch = [*mallory[:2], *others[:10], *mallory[2:], *others[10:]]

    first = indexer.index(batch, remaining=Clock(0.25))  # room for about one wave of 256 chunks
    assert not any(key.startswith("o") for key in first.failures), first.failures
    assert all(searchable(store, embedder, f"user{i}") == {"note"} for i in range(20))
    assert first.failures["m-huge"].startswith("document too large: text has 250000 characters")
    deferred = {m for m, reason in first.failures.items() if reason.startswith("deferred")}
    assert deferred and deferred <= {"m0", "m1", "m2"}  # only mallory's own records wait

    # the redelivery: mallory's deferred records again, and new one-liners from the others
    again = [
        record(m, next(r.body for r in mallory if r.message_id == m), receives=2) for m in sorted(deferred)
    ]
    fresh = [
        record(f"n{i}", upsert(f"user{i}", "second", f"alpha one line, second, {i}", ts=2000))
        for i in range(20)
    ]
    second = indexer.index([*again, *fresh], remaining=Clock(0.25))
    assert not any(key.startswith("n") for key in second.failures), second.failures
    assert all(searchable(store, embedder, f"user{i}") == {"note", "second"} for i in range(20))

    # a batch with time to spare finishes mallory's documents
    left = {m for m, reason in second.failures.items() if reason.startswith("deferred")}
    third = indexer.index(
        [record(m, next(r.body for r in mallory if r.message_id == m), receives=3) for m in sorted(left)],
        remaining=Clock(60),
    )
    assert third.failures == {}
    assert searchable(store, embedder, "mallory") == {"big0", "big1", "big2"}


def test_the_chunk_budget_defers_what_would_not_fit_in_memory(store: LanceVectorStore) -> None:
    embedder = FakeEmbedder()
    settings = Settings(chunk_tokens=20, chunk_overlap=0, index_batch_max_chunks=100)
    indexer = Indexer(store, lambda: embedder, settings)  # type: ignore[arg-type, return-value]
    outcome = indexer.index(
        [record(f"b{i}", upsert("u", f"d{i}", long_text(40))) for i in range(4)]
        + [record("s", upsert("v", "s", "short"))]
    )
    assert outcome.written == 3 and outcome.deferred == 2  # 1 + 40 + 40 chunks fit in 100
    assert sorted(m for m, r in outcome.failures.items() if r.startswith("deferred")) == ["b2", "b3"]


@pytest.mark.parametrize(
    ("text", "metadata", "reason"),
    [
        ("x " * 60_000, {}, "text has 120000 characters"),
        ("fine", {"blob": "y" * 5000}, "metadata is 5011 bytes"),
        ("fine", {"tags": [f"t{i:04d}" for i in range(200)]}, "the filterable metadata"),
        (long_text(200), {}, "text makes 200 chunks"),
        (long_text(155), {"max_tokens": 3000}, "text has 3100 tokens"),
    ],
    ids=["chars", "metadata", "filter-terms", "chunks", "tokens"],
)
def test_a_document_over_a_limit_fails_alone(
    store: LanceVectorStore, text: str, metadata: dict, reason: str
) -> None:
    embedder = FakeEmbedder()
    limit = metadata.pop("max_tokens", 25_000)
    settings = Settings(chunk_tokens=20, chunk_overlap=0, document_max_tokens=limit)
    indexer = Indexer(store, lambda: embedder, settings)  # type: ignore[arg-type, return-value]
    outcome = indexer.index(
        [
            record("bad", upsert("u", "bad", text, metadata=metadata)),
            record("ok", upsert("u", "ok", "alpha one line")),
        ]
    )
    assert list(outcome.failures) == ["bad"] and reason in outcome.failures["bad"]
    assert outcome.written == 1 and searchable(store, embedder, "u") == {"ok"}

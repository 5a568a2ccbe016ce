"""The VectorStore contract, run against both backends: local LanceDB and AWS (S3 Vectors +
DynamoDB on the moto server with the QueryVectors fake).

Newest-wins, tombstones, redeliveries, scoping, filters, one hit per document, metadata
stored once per document, failure records, reindex, read-after-write visibility across
store instances (what two processes see), and crash windows that must never show a stale
document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hflambda.errors import BadInput
from hflambda.messages import version_key
from hflambda.settings import Settings
from hflambda.vectors import open_vector_store
from hflambda.vectors.base import VectorStore
from hflambda.vectors.ledger import FailureLedger, FailureRecord
from hflambda.vectors.types import Chunk, DeleteOp, UpsertOp, VectorSpace

pytestmark = pytest.mark.integration

SPACE = VectorSpace("embed", "rev-1", 8)
NEXT = VectorSpace("embed", "rev-2", 8)
RNG = np.random.default_rng(11)

Factory = Callable[[], VectorStore]


def unit(seed: int | None = None) -> np.ndarray:
    vector = (np.random.default_rng(seed) if seed is not None else RNG).standard_normal(8).astype(np.float32)
    return vector / np.linalg.norm(vector)


def upsert(
    user: str,
    doc: str,
    ts: int,
    chunks: int = 1,
    *,
    text: str = "t",
    metadata: dict | None = None,
    seed: int | None = None,
) -> UpsertOp:
    return UpsertOp(
        user_id=user,
        document_id=doc,
        version=version_key(ts, "upsert", text),
        ts=ts,
        text=text,
        metadata=metadata or {},
        chunks=tuple(
            Chunk(i, f"{text} #{i}", i * 10, i * 10 + 5, unit(None if seed is None else seed + i))
            for i in range(chunks)
        ),
    )


def delete(user: str, doc: str, ts: int) -> DeleteOp:
    return DeleteOp(user_id=user, document_id=doc, version=version_key(ts, "delete"), ts=ts)


@pytest.fixture(params=["local", "aws"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory of store instances on one fresh store (each instance: another process's view)."""
    if request.param == "local":
        settings = Settings(
            vector_backend="local", vector_uri=str(tmp_path / "vectors"), vector_index_min_rows=200
        )
    else:
        env = request.getfixturevalue("aws_vectors")
        settings = Settings(
            vector_backend="aws",
            vector_bucket=env["HFLAMBDA_VECTOR_BUCKET"],
            vector_index=env["HFLAMBDA_VECTOR_INDEX"],
            vector_table=env["HFLAMBDA_VECTOR_TABLE"],
        )
    return lambda: open_vector_store(settings)


@pytest.fixture
def store(backend: Factory) -> VectorStore:
    return backend()


def texts(
    store: VectorStore, user: str, *, top_k: int = 100, space: VectorSpace = SPACE, **options: object
) -> dict[str, str]:
    """Every document the user can find (document id → the text of its best chunk)."""
    hits = store.search(user, unit(0), space=space, top_k=top_k, **options)  # type: ignore[arg-type]
    assert len({h.document_id for h in hits}) == len(hits), "one hit per document"
    return {h.document_id: h.text for h in hits}


def test_upsert_then_update_replaces_every_chunk(store: VectorStore) -> None:
    result = store.apply([upsert("u", "d", 1, 3, text="v1")], SPACE)
    assert result.written == [("u", "d")] and result.chunks_written == 3
    assert store.count_chunks(SPACE) == 3
    store.apply([upsert("u", "d", 2, 1, text="v2")], SPACE)  # shorter: chunks 1, 2 must go
    assert store.count_chunks(SPACE) == 1
    assert texts(store, "u") == {"d": "v2 #0"}
    doc = store.get_document("u", "d")
    assert doc is not None and (doc.text, doc.deleted, doc.chunks, doc.ts) == ("v2", False, 1, 2)


def test_redelivery_changes_nothing_and_older_never_overwrites(store: VectorStore) -> None:
    op = upsert("u", "d", 5, 2, text="v5")
    store.apply([op], SPACE)
    assert store.plan([op], SPACE) == {("u", "d"): "duplicate"}
    older = upsert("u", "d", 3, 4, text="v3")
    assert store.plan([older], SPACE) == {("u", "d"): "superseded"}
    result = store.apply([older], SPACE)
    assert result.superseded == [("u", "d")] and result.chunks_written == 0
    assert texts(store, "u") == {"d": "v5 #1"} or texts(store, "u") == {"d": "v5 #0"}
    assert store.count_chunks(SPACE) == 2


def test_newest_in_one_batch_wins(store: VectorStore) -> None:
    result = store.apply([upsert("u", "d", 2, text="new"), upsert("u", "d", 1, text="old")], SPACE)
    assert result.superseded == [("u", "d")]
    assert texts(store, "u") == {"d": "new #0"}


def test_delete_leaves_a_tombstone_that_stops_late_upserts(store: VectorStore) -> None:
    store.apply([upsert("u", "d", 1, 3, text="v1")], SPACE)
    assert store.apply([delete("u", "d", 5)], SPACE).deleted == [("u", "d")]
    assert texts(store, "u") == {} and store.count_chunks(SPACE) == 0
    doc = store.get_document("u", "d")
    assert doc is not None and doc.deleted and doc.text == ""
    late = upsert("u", "d", 4, 2, text="late")
    assert store.plan([late], SPACE) == {("u", "d"): "superseded"}
    assert store.apply([late], SPACE).superseded == [("u", "d")]
    assert texts(store, "u") == {} and store.count_chunks(SPACE) == 0
    assert store.plan([delete("u", "d", 5)], SPACE) == {("u", "d"): "duplicate"}
    store.apply([upsert("u", "d", 6, text="back")], SPACE)  # a newer upsert does come back
    assert texts(store, "u") == {"d": "back #0"}


def test_delete_beats_upsert_at_the_same_ts(store: VectorStore) -> None:
    store.apply([upsert("u", "d", 7, text="x"), delete("u", "d", 7)], SPACE)
    assert texts(store, "u") == {}
    store.apply([upsert("u", "d", 7, text="y")], SPACE)
    assert texts(store, "u") == {}


def test_search_is_scoped_to_the_user_and_the_model_revision(store: VectorStore) -> None:
    store.apply([upsert("alice", "a", 1, text="alice's"), upsert("bob", "b", 1, text="bob's")], SPACE)
    store.apply([upsert("alice", "n", 1, text="other revision")], NEXT)
    assert texts(store, "alice") == {"a": "alice's #0"}
    assert texts(store, "bob") == {"b": "bob's #0"}
    assert texts(store, "carol") == {}
    assert texts(store, "alice", space=NEXT) == {"n": "other revision #0"}


@pytest.mark.parametrize("evil", ["x' OR '1'='1", 'x") OR true --', "back\\slash", "ünï'cødé"])
def test_ids_and_filters_cannot_break_out_of_their_literal(store: VectorStore, evil: str) -> None:
    store.apply(
        [upsert(evil, evil, 1, text="evil", metadata={"k": evil}), upsert("u", "d", 1, text="plain")], SPACE
    )
    assert texts(store, evil) == {evil: "evil #0"}
    assert texts(store, evil, filter={"k": evil}) == {evil: "evil #0"}
    assert texts(store, "u", filter={"k": evil}) == {}


def test_one_hit_per_document_filters_and_metadata_stored_once(store: VectorStore) -> None:
    store.apply(
        [
            upsert(
                "u",
                "en",
                1,
                3,
                text="english",
                metadata={"lang": "en", "year": 2024, "tags": ["a", "b"], "nested": {"x": 1}},
            ),
            upsert("u", "fr", 1, 2, text="french", metadata={"lang": "fr", "year": 2023.0, "tags": ["b"]}),
            upsert("u", "none", 1, 1, text="bare"),
        ],
        SPACE,
    )
    assert set(texts(store, "u")) == {"en", "fr", "none"}
    assert set(texts(store, "u", filter={"lang": "en"})) == {"en"}
    assert set(texts(store, "u", filter={"lang": ["en", "fr"]})) == {"en", "fr"}
    assert set(texts(store, "u", filter={"year": 2023})) == {"fr"}  # 2023 == 2023.0
    assert set(texts(store, "u", filter={"tags": "b"})) == {"en", "fr"}  # a list contains it
    assert set(texts(store, "u", filter={"tags": "a", "lang": "en"})) == {"en"}
    assert set(texts(store, "u", filter={"tags": "a", "lang": "fr"})) == set()
    hit = next(h for h in store.search("u", unit(0), space=SPACE, top_k=10) if h.document_id == "en")
    assert (
        hit.metadata == {"lang": "en", "year": 2024, "tags": ["a", "b"], "nested": {"x": 1}} and hit.ts == 1
    )


def test_an_empty_filter_list_is_bad_input_not_a_store_failure(store: VectorStore) -> None:
    store.apply([upsert("u", "d", 1)], SPACE)
    with pytest.raises(BadInput) as caught:
        store.search("u", unit(0), space=SPACE, top_k=5, filter={"lang": []})
    assert caught.value.status == 400 and caught.value.field == "filter.lang"


def test_top_k_documents_even_when_one_document_has_many_chunks(store: VectorStore) -> None:
    query = unit(0)
    close = UpsertOp(
        "u",
        "big",
        version_key(1, "upsert", "big"),
        1,
        "big",
        {},
        tuple(Chunk(i, f"big {i}", 0, 1, query) for i in range(30)),
    )
    store.apply([close, *(upsert("u", f"d{i}", 1, text=f"d{i}") for i in range(8))], SPACE)
    hits = store.search("u", query, space=SPACE, top_k=5)
    assert len(hits) == 5 and hits[0].document_id == "big" and len({h.document_id for h in hits}) == 5


def test_failures_are_recorded_and_read_back(store: VectorStore) -> None:
    now = datetime.now(UTC)
    store.record_failures(
        [
            FailureRecord("m1", "embedding failed: boom", 2, "arn:q", now),
            FailureRecord("m2", "invalid message: x", 1, "", now),
        ]
    )
    reasons = store.failure_reasons(["m1", "m2", "m3"])
    assert set(reasons) == {"m1", "m2"}
    assert (reasons["m1"].reason, reasons["m1"].receive_count, reasons["m1"].source) == (
        "embedding failed: boom",
        2,
        "arn:q",
    )


def test_the_failure_ledger_is_its_own_protocol_and_every_backend_keeps_one(backend: Factory) -> None:
    writer, reader = backend(), backend()
    assert not hasattr(VectorStore, "record_failures") and not hasattr(VectorStore, "failure_reasons")
    assert isinstance(writer, FailureLedger) and isinstance(reader, FailureLedger)
    writer.record_failures(
        [FailureRecord("m9", "vector store write failed: x", 3, "arn:q", datetime.now(UTC))]
    )
    found = reader.failure_reasons(["m9", "m10"])
    assert list(found) == ["m9"] and (found["m9"].reason, found["m9"].receive_count) == (
        "vector store write failed: x",
        3,
    )


def test_stale_documents_and_reindex_move_to_the_new_revision(store: VectorStore) -> None:
    store.apply([upsert("u", "a", 1, 2, text="a"), upsert("u", "b", 1, text="b"), delete("u", "c", 1)], SPACE)
    pages = list(store.stale_documents(NEXT, batch_size=1))
    assert sorted(d.document_id for page in pages for d in page) == ["a", "b"] and all(
        len(p) == 1 for p in pages
    )
    docs = {d.document_id: d for page in pages for d in page}
    assert docs["a"].text == "a"
    ops = [upsert("u", d.document_id, d.ts, 1, text=d.text) for d in docs.values()]
    result = store.reindex(ops, NEXT)
    assert sorted(result.written) == [("u", "a"), ("u", "b")]
    assert list(store.stale_documents(NEXT)) == []
    assert texts(store, "u", space=NEXT) == {"a": "a #0", "b": "b #0"}


def test_writes_are_visible_at_once_to_another_instance(backend: Factory) -> None:
    """Read-after-write across processes: a reader that searched (and cached whatever it
    caches) before the first write, before maintenance, and before a delete sees each change
    immediately."""
    reader, writer, maintainer = backend(), backend(), backend()
    assert texts(reader, "u") == {}  # before the store has any table or index
    writer.apply([upsert("u", "d0", 1, text="first")], SPACE)
    assert texts(reader, "u") == {"d0": "first #0"}
    writer.apply([upsert("u", f"d{i}", 1, text=f"doc{i}") for i in range(1, 260)], SPACE)
    maintainer.maintain()  # local: builds the ANN and scalar indexes (index_min_rows=200)
    probe = unit(12345)
    late = UpsertOp(
        "u", "late", version_key(2, "upsert", "late"), 2, "late", {}, (Chunk(0, "late #0", 0, 4, probe),)
    )
    writer.apply([late], SPACE)
    assert reader.search("u", probe, space=SPACE, top_k=1)[0].document_id == "late"
    writer.apply([delete("u", "late", 3)], SPACE)
    assert "late" not in {h.document_id for h in reader.search("u", probe, space=SPACE, top_k=3)}


def crash_after_vectors(
    store: VectorStore, op: UpsertOp, meanwhile: Callable[[], object] = lambda: None
) -> None:
    """A writer that started ``op`` (``meanwhile`` runs after it registered or read what it
    needs), wrote its vectors, and died before its catalogue write."""
    from hflambda.vectors.aws import S3VectorsStore, _Entry, _now_ms
    from hflambda.vectors.lance import LanceVectorStore

    if isinstance(store, S3VectorsStore):
        assert store._register(op, _Entry(op.version, SPACE.revision, len(op.chunks), _now_ms())) is None
        meanwhile()
        store._put([op], SPACE)
    else:
        assert isinstance(store, LanceVectorStore)
        meanwhile()
        store._merge_chunks([op], SPACE, {}, datetime.now(UTC))


def test_a_crash_between_vector_and_catalogue_writes_never_shows_a_stale_document(backend: Factory) -> None:
    store, other = backend(), backend()
    store.apply([upsert("u", "d", 1, 1, text="v1")], SPACE)
    newer = upsert("u", "d", 2, 3, text="v2")
    crash_after_vectors(store, newer)
    # v2 is not current yet: never shown. AWS keeps every version's vectors apart, so v1 stays
    # searchable; the local table replaces chunk rows in place, so d is hidden until the redelivery.
    expected = {"d": "v1 #0"} if type(store).__name__ == "S3VectorsStore" else {}
    assert texts(store, "u") == expected
    store.apply([newer], SPACE)  # the redelivery
    assert texts(store, "u")["d"].startswith("v2 #") and store.count_chunks(SPACE) == 3
    # a slow writer of v3 starts, a delete (v4) lands meanwhile, the slow writer puts and dies
    slow = upsert("u", "d", 3, 2, text="v3")
    crash_after_vectors(store, slow, meanwhile=lambda: other.apply([delete("u", "d", 4)], SPACE))
    assert texts(store, "u") == {}
    store.apply([slow], SPACE)  # its redelivery: superseded, and its vectors collected
    assert texts(store, "u") == {} and store.count_chunks(SPACE) == 0

"""The LanceDB vector store on a local folder: newest-wins, tombstones, settling, scoping."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hflambda.messages import version_key
from hflambda.vectors.lance import CATALOGUE, LanceVectorStore, sql_literal
from hflambda.vectors.types import Chunk, DeleteOp, UpsertOp, VectorSpace

pytestmark = pytest.mark.integration

SPACE = VectorSpace("embed", "rev-1", 8)
RNG = np.random.default_rng(7)


def unit(seed: int | None = None, dims: int = 8) -> np.ndarray:
    vector = (
        (np.random.default_rng(seed) if seed is not None else RNG).standard_normal(dims).astype(np.float32)
    )
    return vector / np.linalg.norm(vector)


def upsert(
    user: str,
    doc: str,
    ts: int,
    chunks: int = 1,
    *,
    text: str = "t",
    metadata: dict | None = None,
    space: VectorSpace = SPACE,
) -> UpsertOp:
    return UpsertOp(
        user_id=user,
        document_id=doc,
        version=version_key(ts, "upsert", text),
        ts=ts,
        text=text,
        metadata=metadata or {},
        chunks=tuple(
            Chunk(i, f"{text} #{i}", i * 10, i * 10 + 5, unit(dims=space.dimensions)) for i in range(chunks)
        ),
    )


def delete(user: str, doc: str, ts: int) -> DeleteOp:
    return DeleteOp(user_id=user, document_id=doc, version=version_key(ts, "delete"), ts=ts)


@pytest.fixture
def store(tmp_path: Path) -> LanceVectorStore:
    return LanceVectorStore(str(tmp_path / "vectors"), index_min_rows=200)


def chunk_map(store: LanceVectorStore, user: str, doc: str) -> dict[int, str]:
    return {r["chunk"]: r["text"] for r in store.chunk_rows([(user, doc)], SPACE)}


def test_upsert_then_update_replaces_every_chunk(store: LanceVectorStore) -> None:
    result = store.apply([upsert("u", "d", 1, 3, text="v1")], SPACE)
    assert result.written == [("u", "d")] and result.chunks_written == 3
    assert chunk_map(store, "u", "d") == {0: "v1 #0", 1: "v1 #1", 2: "v1 #2"}
    store.apply([upsert("u", "d", 2, 1, text="v2")], SPACE)  # shorter: chunks 1, 2 must go
    assert chunk_map(store, "u", "d") == {0: "v2 #0"}
    doc = store.get_document("u", "d")
    assert doc is not None and (doc.text, doc.deleted, doc.chunks) == ("v2", False, 1)


def test_redelivery_changes_nothing_and_older_never_overwrites(store: LanceVectorStore) -> None:
    newer = upsert("u", "d", 5, 2, text="new")
    store.apply([newer], SPACE)
    assert store.plan([newer], SPACE) == {("u", "d"): "duplicate"}
    again = store.apply([newer], SPACE)
    assert again.written == [("u", "d")] and again.repaired == 0
    older = upsert("u", "d", 4, 3, text="old")
    assert store.plan([older], SPACE) == {("u", "d"): "superseded"}
    result = store.apply([older], SPACE)
    assert result.superseded == [("u", "d")] and result.chunks_written == 0
    assert chunk_map(store, "u", "d") == {0: "new #0", 1: "new #1"}


def test_newest_in_one_batch_wins(store: LanceVectorStore) -> None:
    result = store.apply(
        [upsert("u", "d", 3, text="c"), upsert("u", "d", 9, text="z"), upsert("u", "d", 1, text="a")], SPACE
    )
    assert sorted(result.superseded) == [("u", "d"), ("u", "d")]
    assert chunk_map(store, "u", "d") == {0: "z #0"}


def test_delete_leaves_a_tombstone_that_stops_late_upserts(store: LanceVectorStore) -> None:
    store.apply([upsert("u", "d", 10, 4)], SPACE)
    result = store.apply([delete("u", "d", 11)], SPACE)
    assert result.deleted == [("u", "d")]
    assert chunk_map(store, "u", "d") == {}
    tomb = store.get_document("u", "d")
    assert tomb is not None and tomb.deleted and tomb.text == ""
    # an upsert older than the delete, arriving late, does not resurrect the document
    store.apply([upsert("u", "d", 10, 2, text="late")], SPACE)
    assert chunk_map(store, "u", "d") == {}
    assert store.plan([delete("u", "d", 11)], SPACE) == {("u", "d"): "duplicate"}
    # a newer upsert does
    store.apply([upsert("u", "d", 12, 1, text="back")], SPACE)
    assert chunk_map(store, "u", "d") == {0: "back #0"}


def test_delete_beats_upsert_at_the_same_ts(store: LanceVectorStore) -> None:
    store.apply([delete("u", "d", 7)], SPACE)
    store.apply([upsert("u", "d", 7)], SPACE)
    assert chunk_map(store, "u", "d") == {}


def test_interleaved_writers_converge_to_the_newest_version(tmp_path: Path) -> None:
    """Two store handles (two processes' view) racing: a stale writer's extra chunks are settled away."""
    uri = str(tmp_path / "vectors")
    fast, slow = LanceVectorStore(uri), LanceVectorStore(uri)
    stale = upsert("u", "d", 1, 5, text="stale")
    fresh = upsert("u", "d", 2, 1, text="fresh")
    # the stale writer read the catalogue before the fresh one committed, and writes its
    # chunks after the fresh writer finished: simulate by writing its chunks directly
    fast.apply([fresh], SPACE)
    slow._merge_chunks([stale], SPACE, {}, datetime.now(UTC))
    assert len(chunk_map(slow, "u", "d")) == 5
    repaired = slow._settle([("u", "d")], {("u", "d"): stale.version}, SPACE)
    assert repaired == 4
    assert chunk_map(fast, "u", "d") == {0: "fresh #0"}


@pytest.mark.parametrize("stable_row_ids", [True, False], ids=["stable-row-ids", "old-tables"])
def test_settle_after_a_concurrent_compaction_still_deletes_the_stale_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stable_row_ids: bool
) -> None:
    """Issue 13's race: settle reads row ids, another writer compacts, settle deletes by id.

    Without stable row ids (how tables were created before) compaction renumbers the rows,
    the delete matches nothing and the stale chunks survive; with them the delete lands."""
    import hflambda.vectors.lance as lance

    if not stable_row_ids:
        monkeypatch.setattr(lance, "_STABLE_ROW_IDS", {})
    uri = str(tmp_path / "vectors")
    writer, other = LanceVectorStore(uri), LanceVectorStore(uri)
    for i in range(6):  # a few fragments before ours, so compaction renumbers them
        other.apply([upsert("u", f"filler{i}", 1, 2)], SPACE)
    stale = upsert("u", "d", 1, 5, text="stale")
    fresh = upsert("u", "d", 2, 1, text="fresh")
    other.apply([fresh], SPACE)
    writer._merge_chunks([stale], SPACE, {}, datetime.now(UTC))
    original = LanceVectorStore._delete_rowids

    def compact_then_delete(table: object, rowids: list[int]) -> int:
        other._open("vchunks_8").optimize()  # another writer's compaction lands in between
        return original(table, rowids)

    monkeypatch.setattr(LanceVectorStore, "_delete_rowids", staticmethod(compact_then_delete))
    writer._settle([("u", "d")], {("u", "d"): stale.version}, SPACE)
    texts = sorted(chunk_map(other, "u", "d").values())
    if stable_row_ids:
        assert texts == ["fresh #0"]
    else:
        assert len(texts) > 1  # reproduced: stale rows survive a delete that matched nothing


def test_settle_never_deletes_rows_newer_than_the_catalogue_it_read(store: LanceVectorStore) -> None:
    """A writer whose catalogue commit landed after our read writes newer rows: they stay."""
    store.apply([upsert("u", "d", 1, 1, text="old")], SPACE)
    newer = upsert("u", "d", 3, 3, text="newer")
    store._merge_chunks([newer], SPACE, {}, datetime.now(UTC))  # its catalogue commit not seen yet
    assert store._settle([("u", "d")], {}, SPACE) == 0
    assert chunk_map(store, "u", "d") == {0: "newer #0", 1: "newer #1", 2: "newer #2"}
    # once its catalogue commit is visible, the older rows (if any) go and the newer stay
    store.apply([newer], SPACE)
    assert chunk_map(store, "u", "d") == {0: "newer #0", 1: "newer #1", 2: "newer #2"}


def test_duplicate_rows_from_concurrent_first_inserts_are_settled(store: LanceVectorStore) -> None:
    op = upsert("u", "d", 1, 2, text="dup")
    store.apply([op], SPACE)
    # what two concurrent "not matched" inserts of one new key leave behind
    table = store._open("vchunks_8")
    assert table is not None
    table.add(table.search().where("document_id = 'd'").limit(None).to_arrow())
    store._open(CATALOGUE).add(store._open(CATALOGUE).search().limit(None).to_arrow())
    assert len(store.chunk_rows([("u", "d")], SPACE)) == 4
    assert store.plan([op], SPACE) == {}  # not a clean duplicate: it gets rewritten
    store.apply([op], SPACE)
    assert sorted(chunk_map(store, "u", "d")) == [0, 1] and len(store.chunk_rows([("u", "d")], SPACE)) == 2
    assert store._open(CATALOGUE).count_rows() == 1


def test_search_is_scoped_to_the_user_and_the_model_revision(store: LanceVectorStore) -> None:
    target = unit(1)
    mine = upsert("alice", "a1", 1, text="mine")
    mine = UpsertOp(**{**mine.__dict__, "chunks": (Chunk(0, "mine", 0, 4, target),)})
    theirs = upsert("bob", "b1", 1, text="theirs")
    theirs = UpsertOp(**{**theirs.__dict__, "chunks": (Chunk(0, "theirs", 0, 6, target),)})
    store.apply([mine, theirs], SPACE)
    hits = store.search("alice", target, space=SPACE, top_k=10)
    assert [h.document_id for h in hits] == ["a1"] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.document_id for h in store.search("bob", target, space=SPACE)] == ["b1"]
    assert store.search("carol", target, space=SPACE) == []
    # vectors of another revision (same size) are never compared
    other = VectorSpace("embed", "rev-2", 8)
    assert store.search("alice", target, space=other) == []
    assert store.count_chunks(SPACE, user_id="alice") == 1 and store.count_chunks(other) == 0


@pytest.mark.parametrize(
    "evil",
    [
        "alice' OR '1'='1",
        "alice\\' OR 1=1 --",
        "x' OR user_id <> '",
        "alice'); DROP TABLE documents; --",
        "ali\x00ce",
    ],
)
def test_user_ids_and_filters_cannot_break_out_of_their_literal(store: LanceVectorStore, evil: str) -> None:
    store.apply([upsert("alice", "a1", 1, metadata={"lang": "en"})], SPACE)
    assert store.search(evil, unit(3), space=SPACE) == []
    assert store.search("bob", unit(3), space=SPACE, filter={"lang": evil}) == []
    assert store.search("alice", unit(3), space=SPACE, filter={evil: "en"}) == []
    assert sql_literal("it's") == "'it''s'"


def test_one_hit_per_document_and_metadata_filters(store: LanceVectorStore) -> None:
    store.apply(
        [
            upsert("u", "long", 1, 6, metadata={"lang": "en", "tags": ["a", "b"], "n": 1}),
            upsert("u", "fr", 1, 1, metadata={"lang": "fr", "n": 1.0}),
            upsert("u", "de", 1, 1, metadata={"lang": "de", "nested": {"x": 1}}),
        ],
        SPACE,
    )
    hits = store.search("u", unit(5), space=SPACE, top_k=10)
    assert sorted(h.document_id for h in hits) == ["de", "fr", "long"]
    assert hits == sorted(hits, key=lambda h: -h.score)

    def ids(flt: dict) -> list[str]:
        return sorted(h.document_id for h in store.search("u", unit(5), space=SPACE, filter=flt))

    assert ids({"lang": "en"}) == ["long"]
    assert ids({"lang": ["en", "fr"]}) == ["fr", "long"]
    assert ids({"tags": "b"}) == ["long"]
    assert ids({"n": 1}) == ["fr", "long"]  # 1 and 1.0 are the same value
    assert ids({"lang": "en", "n": 2}) == []
    assert ids({"lang": "1"}) == []
    assert ids({}) == ["de", "fr", "long"]
    assert store.search("u", unit(5), space=SPACE, top_k=2)[0].metadata in (
        {"lang": "en", "tags": ["a", "b"], "n": 1},
        {"lang": "fr", "n": 1.0},
        {"lang": "de", "nested": {"x": 1}},
    )


def test_top_k_documents_even_when_one_document_has_many_chunks(store: LanceVectorStore) -> None:
    target = unit(9)
    many = upsert("u", "many", 1, 40)
    many = UpsertOp(**{**many.__dict__, "chunks": tuple(Chunk(i, f"c{i}", 0, 1, target) for i in range(40))})
    store.apply([many] + [upsert("u", f"d{i}", 1) for i in range(5)], SPACE)
    hits = store.search("u", target, space=SPACE, top_k=4)
    assert len(hits) == 4 and hits[0].document_id == "many"
    assert len({h.document_id for h in hits}) == 4


def test_maintain_builds_indexes_and_ann_search_still_scopes(store: LanceVectorStore) -> None:
    ops = [upsert(f"user{i % 4}", f"d{i}", 1, 1) for i in range(300)]
    store.apply(ops, SPACE)
    report = store.maintain()
    assert "vchunks_8.vector" in report.indexes_created and "vchunks_8.user_id" in report.indexes_created
    assert store.has_vector_index(SPACE)
    hits = store.search("user1", ops[5].chunks[0].vector, space=SPACE, top_k=3)
    assert hits[0].document_id == "d5" and all(int(h.document_id[1:]) % 4 == 1 for h in hits)
    # writes after the index keep working and are found (unindexed rows are searched too)
    store.apply([upsert("user1", "late", 1)], SPACE)
    assert "late" in {h.document_id for h in store.search("user1", unit(11), space=SPACE, top_k=200)}
    again = store.maintain()
    assert again.indexes_created == [] and "vchunks_8" in again.optimized


def test_failures_are_recorded_and_expired(store: LanceVectorStore) -> None:
    from datetime import UTC, datetime, timedelta

    from hflambda.vectors.ledger import FailureRecord

    now = datetime.now(UTC)
    store.record_failures(
        [
            FailureRecord("m1", "first", 1, "arn", now - timedelta(seconds=5)),
            FailureRecord("m1", "second", 2, "arn", now),
        ]
    )
    store.record_failures([FailureRecord("m2", "old", 1, "arn", now - timedelta(days=30))])
    found = store.failure_reasons(["m1", "m2", "m3"])
    assert found["m1"].reason == "second" and found["m1"].receive_count == 2 and "m3" not in found
    assert store.maintain().failures_expired == 1
    assert set(store.failure_reasons(["m1", "m2"])) == {"m1"}


def test_stale_documents_and_reindex_move_to_the_new_revision(store: LanceVectorStore) -> None:
    store.apply(
        [upsert("u", f"d{i}", 1, 2, text=f"text {i}") for i in range(5)] + [delete("u", "gone", 1)], SPACE
    )
    assert list(store.stale_documents(SPACE)) == []
    rev2 = VectorSpace("embed", "rev-2", 8)
    pages = list(store.stale_documents(rev2, batch_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    docs = [d for page in pages for d in page]
    assert {d.document_id for d in docs} == {f"d{i}" for i in range(5)}
    ops = [
        UpsertOp(
            d.user_id,
            d.document_id,
            d.version,
            d.ts,
            d.text,
            d.metadata,
            (Chunk(0, d.text, 0, len(d.text), unit()),),
        )
        for d in docs
    ]
    result = store.reindex(ops, rev2)
    assert (
        len(result.written) == 5 and result.repaired == 5
    )  # chunk 0 replaced in place, chunk 1 settled away
    assert list(store.stale_documents(rev2)) == []
    assert store.count_chunks(rev2) == 5 and store.count_chunks(SPACE) == 0
    # a reindex op whose document changed meanwhile is left alone
    store.apply([upsert("u", "d0", 2, 1, text="newer")], rev2)
    assert store.reindex(ops[:1], rev2).superseded == [("u", "d0")]
    assert chunk_map_space(store, "u", "d0", rev2) == {0: "newer #0"}


def chunk_map_space(store: LanceVectorStore, user: str, doc: str, space: VectorSpace) -> dict[int, str]:
    return {r["chunk"]: r["text"] for r in store.chunk_rows([(user, doc)], space)}


def test_a_new_vector_size_gets_its_own_table_and_deletes_reach_every_table(store: LanceVectorStore) -> None:
    big = VectorSpace("embed-large", "rev-9", 16)
    store.apply([upsert("u", "d", 1, 2)], SPACE)
    store.apply([upsert("u", "d", 2, 1, space=big)], big)
    assert store.count_chunks(big) == 1
    assert store.count_chunks(SPACE) == 0  # the older version's chunks are settled away everywhere
    store.apply([delete("u", "d", 3)], big)
    assert store.count_chunks(big) == 0


def test_writers_compact_small_tables_and_leave_big_ones_to_maintenance(tmp_path: Path) -> None:
    def fragments(store: LanceVectorStore) -> int:
        return int(store._open("vchunks_8").stats()["fragment_stats"]["num_fragments"])

    small = LanceVectorStore(str(tmp_path / "small"), optimize_every=4, index_min_rows=1000)
    for i in range(4):
        small.apply([upsert("u", f"d{i}", 1)], SPACE)
    assert fragments(small) == 1  # compacted on the 4th write
    big = LanceVectorStore(str(tmp_path / "big"), optimize_every=4, index_min_rows=2)
    for i in range(4):
        big.apply([upsert("u", f"d{i}", 1)], SPACE)
    assert fragments(big) == 4  # over index_min_rows: the scheduled maintain compacts it
    big.maintain()
    assert fragments(big) == 1

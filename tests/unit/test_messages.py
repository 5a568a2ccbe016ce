"""The index-queue message contract: parsing, reasons for invalid bodies, version order."""

from __future__ import annotations

import json

import pytest

from hflambda.messages import (
    DeleteMessage,
    Document,
    MessageInvalid,
    UpsertMessage,
    parse_message,
    version_key,
)


def upsert_body(**changes: object) -> str:
    body: dict[str, object] = {
        "v": 1,
        "op": "upsert",
        "user_id": "alice",
        "document": {"id": "d1", "text": "hello", "metadata": {"k": 1}},
    }
    body.update(changes)
    return json.dumps(body)


def test_contract_examples_parse() -> None:
    upsert = parse_message(upsert_body())
    assert isinstance(upsert, UpsertMessage)
    assert (upsert.user_id, upsert.document.id, upsert.document.text, upsert.document.metadata) == (
        "alice",
        "d1",
        "hello",
        {"k": 1},
    )
    assert upsert.ts is None
    delete = parse_message('{"v":1,"op":"delete","user_id":"alice","document_id":"d1"}')
    assert isinstance(delete, DeleteMessage)
    assert delete.document_id == "d1"


def test_ts_accepts_epoch_ms_and_iso() -> None:
    assert parse_message(upsert_body(ts=1_700_000_000_123)).ts == 1_700_000_000_123
    assert parse_message(upsert_body(ts="2024-01-01T00:00:00Z")).ts == 1_704_067_200_000
    assert parse_message(upsert_body(ts="2024-01-01T01:00:00+01:00")).ts == 1_704_067_200_000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "body is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (upsert_body(v=2), "unsupported message version v=2"),
        (upsert_body(op="merge"), "op must be 'upsert' or 'delete'"),
        (upsert_body(user_id=""), "user_id"),
        (upsert_body(document={"id": "d1"}), "document.text: Field required"),
        (upsert_body(document={"id": "d1", "text": "   "}), "text is blank"),
        (
            upsert_body(document={"id": "d1", "text": "x", "metdata": {}}),
            "document.metdata: Extra inputs are not permitted",
        ),
        (upsert_body(ts=-5), "ts"),
        (upsert_body(ts="yesterday"), "ISO-8601"),
        ('{"v":1,"op":"delete","user_id":"alice"}', "document_id: Field required"),
    ],
)
def test_invalid_bodies_say_why(body: str, reason: str) -> None:
    with pytest.raises(MessageInvalid) as caught:
        parse_message(body)
    assert reason in caught.value.reason


def test_to_body_round_trips_in_contract_order() -> None:
    message = UpsertMessage(
        user_id="alice", ts=42, document=Document(id="d1", text="hi", metadata={"a": [1, 2]})
    )
    body = message.to_body()
    assert list(json.loads(body)) == ["v", "op", "user_id", "ts", "document"]
    assert parse_message(body) == message
    no_ts = DeleteMessage(user_id="alice", document_id="d1").to_body()
    assert json.loads(no_ts) == {"v": 1, "op": "delete", "user_id": "alice", "document_id": "d1"}


def test_versions_order_newest_wins() -> None:
    old = UpsertMessage(user_id="u", ts=1000, document=Document(id="d", text="old"))
    new = UpsertMessage(user_id="u", ts=1001, document=Document(id="d", text="new"))
    assert old.version(0) < new.version(0)
    # at equal ts a delete beats an upsert, whatever the content
    tie_delete = DeleteMessage(user_id="u", ts=1001, document_id="d")
    assert new.version(0) < tie_delete.version(0)
    # equal ts, different content: ordered by digest, the same on every replica
    other = UpsertMessage(user_id="u", ts=1001, document=Document(id="d", text="other"))
    assert new.version(0) != other.version(0)
    assert (new.version(0) < other.version(0)) == (new.document.digest() < other.document.digest())
    # a redelivery is the same version
    assert new.version(0) == parse_message(new.to_body()).version(0)


def test_missing_ts_falls_back_to_sent_timestamp() -> None:
    message = parse_message(upsert_body())
    assert message.version(5_000) == version_key(5_000, "upsert", message.document.digest())  # type: ignore[union-attr]
    assert message.version(5_000) < message.version(5_001)
    # ts up to year 33658 keeps lexicographic order = numeric order
    assert version_key(999, "upsert") < version_key(1000, "upsert") < version_key(10**14, "upsert")


def test_text_that_no_queue_or_table_can_hold_is_refused_and_sqs_unsafe_characters_are_escaped() -> None:
    with pytest.raises(MessageInvalid, match="valid string"):
        parse_message(upsert_body(document={"id": "d", "text": "bad \ud800 text"}))
    with pytest.raises(ValueError, match="valid string"):
        DeleteMessage(user_id="u\udfff", document_id="d")
    with pytest.raises(MessageInvalid, match="unpaired surrogate"):
        parse_message(upsert_body(document={"id": "d", "text": "t", "metadata": {"k": "\udc00"}}))
    message = UpsertMessage(
        user_id="u", document=Document(id="d", text="odd \uffff char", metadata={"k": "\ufffe"})
    )
    body = message.to_body()
    assert "\uffff" not in body and "\ufffe" not in body and "\\uffff" in body
    assert parse_message(body) == message

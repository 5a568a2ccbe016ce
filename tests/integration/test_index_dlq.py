"""DLQ tooling against SQS (moto): reasons (recorded, re-validated, unknown), redrive."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hflambda.dlq import DeadLetters, dlq_url_of
from hflambda.vectors.lance import LanceVectorStore
from hflambda.vectors.ledger import FailureRecord
from tests.fixtures.aws import Queues, make_queues, queue_depth

pytestmark = pytest.mark.integration

VALID = '{"v":1,"op":"upsert","user_id":"u","document":{"id":"d","text":"hello"}}'


@pytest.fixture
def parked(sqs: Any) -> tuple[Queues, dict[str, str]]:
    """Three messages moved to the DLQ by the redrive policy (never deleted by a consumer)."""
    queues = make_queues(sqs, visibility_timeout=0, max_receive_count=1)
    ids = {}
    for name, body in {
        "recorded": VALID.replace('"d"', '"d1"'),
        "invalid": "{broken",
        "crashed": VALID,
    }.items():
        ids[name] = sqs.send_message(QueueUrl=queues.queue_url, MessageBody=body)["MessageId"]
    for _ in range(4):  # receive past maxReceiveCount: SQS moves them to the DLQ
        sqs.receive_message(QueueUrl=queues.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert queue_depth(sqs, queues.queue_url) == 0 and queue_depth(sqs, queues.dlq_url) == 3
    return queues, ids


def test_dlq_is_found_from_the_redrive_policy(sqs: Any, index_queues: Queues) -> None:
    assert dlq_url_of(sqs, index_queues.queue_url) == index_queues.dlq_url
    plain = sqs.create_queue(QueueName="no-dlq-here")["QueueUrl"]
    with pytest.raises(ValueError, match="no RedrivePolicy"):
        dlq_url_of(sqs, plain)


def test_peek_gives_each_message_its_reason_and_leaves_it_parked(
    sqs: Any, parked: tuple[Queues, dict[str, str]], tmp_path: Path
) -> None:
    queues, ids = parked
    store = LanceVectorStore(str(tmp_path / "vectors"))
    store.record_failures(
        [FailureRecord(ids["recorded"], "embedding failed: boom", 1, "arn", datetime.now(UTC))]
    )
    letters = {letter.message_id: letter for letter in DeadLetters(sqs, queues.queue_url, store=store).peek()}
    assert set(letters) == set(ids.values())
    assert (letters[ids["recorded"]].reason, letters[ids["recorded"]].reason_source) == (
        "embedding failed: boom",
        "recorded",
    )
    assert letters[ids["recorded"]].summary == "upsert user=u document=d1"
    assert (
        letters[ids["invalid"]].reason_source == "validation" and "not JSON" in letters[ids["invalid"]].reason
    )
    assert (
        letters[ids["crashed"]].reason_source == "unknown"
        and "crashed or timed out" in letters[ids["crashed"]].reason
    )
    assert all(letter.sent_at is not None for letter in letters.values())
    assert queue_depth(sqs, queues.dlq_url) == 3
    assert len(DeadLetters(sqs, queues.queue_url).peek(limit=2)) == 2  # and visible again for the next look


def test_redrive_moves_back_and_pins_the_original_send_time(
    sqs: Any, parked: tuple[Queues, dict[str, str]]
) -> None:
    queues, _ids = parked
    letters = DeadLetters(sqs, queues.queue_url)
    sent = {letter.body: letter.sent_at for letter in letters.peek()}
    assert letters.redrive(limit=2).moved == 2
    assert queue_depth(sqs, queues.dlq_url) == 1
    assert letters.redrive().moved == 1
    assert queue_depth(sqs, queues.dlq_url) == 0
    bodies = [
        m["Body"]
        for m in sqs.receive_message(QueueUrl=queues.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    ]
    assert "{broken" in bodies  # an invalid body is moved byte for byte
    redriven = [json.loads(b) for b in bodies if b != "{broken"]
    assert len(redriven) == 2
    for message in redriven:
        original = next(
            at
            for body, at in sent.items()
            if body != "{broken" and json.loads(body)["document"]["id"] == message["document"]["id"]
        )
        assert original is not None and message["ts"] == int(original.timestamp() * 1000)

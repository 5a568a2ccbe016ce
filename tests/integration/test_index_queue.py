"""The producer against SQS (moto): batching, per-entry failures, the size limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hflambda.errors import BadInput, PayloadTooLarge, UpstreamError
from hflambda.messages import parse_message
from hflambda.queue import SQS_MAX_MESSAGE_BYTES, IndexQueue
from tests.fixtures.aws import Queues, queue_depth

pytestmark = pytest.mark.integration


class CountingClient:
    """The real client, counting SendMessageBatch calls and failing chosen entries like SQS does."""

    def __init__(self, sqs: Any, *, refuse: set[str] | None = None, broken: bool = False) -> None:
        self.sqs = sqs
        self.refuse = refuse or set()
        self.broken = broken
        self.batches: list[int] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(len(Entries))
        if self.broken:
            raise ConnectionError("endpoint unreachable")
        keep = [
            e
            for e in Entries
            if json.loads(e["MessageBody"]).get("document", {}).get("id") not in self.refuse
        ]
        response = (
            self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=keep) if keep else {"Successful": []}
        )
        failed = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for e in Entries
            if e not in keep
        ]
        return {"Successful": response.get("Successful", []), "Failed": failed}


def received(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return bodies
        bodies.extend(json.loads(m["Body"]) for m in messages)


def test_upserts_are_batched_ten_per_call_and_follow_the_contract(sqs: Any, index_queues: Queues) -> None:
    client = CountingClient(sqs)
    queue = IndexQueue(index_queues.queue_url, sqs_client=client)
    result = queue.upsert(
        "alice", [{"id": f"d{i}", "text": f"text {i}", "metadata": {"i": i}} for i in range(25)]
    )
    assert result.ok and len(result.queued) == 25 and client.batches == [10, 10, 5]
    assert result.raise_on_failure() is result
    bodies = received(sqs, index_queues.queue_url)
    assert len(bodies) == 25
    for b in bodies:
        message = parse_message(json.dumps(b))
        assert message.user_id == "alice" and message.op == "upsert" and b["v"] == 1
    # one process's versions are strictly increasing, even within a millisecond
    stamps = [b["ts"] for b in sorted(bodies, key=lambda b: b["document"]["metadata"]["i"])]
    assert stamps == sorted(set(stamps))


def test_deletes_and_explicit_ts(sqs: Any, index_queues: Queues) -> None:
    queue = IndexQueue(index_queues.queue_url, sqs_client=sqs)
    result = queue.delete("bob", ["a", "b"], ts=1234)
    assert [q.document_id for q in result.queued] == ["a", "b"]
    assert sorted((b["document_id"], b["ts"], b["op"]) for b in received(sqs, index_queues.queue_url)) == [
        ("a", 1234, "delete"),
        ("b", 1234, "delete"),
    ]


def test_entries_sqs_refuses_are_reported_per_document(sqs: Any, index_queues: Queues) -> None:
    client = CountingClient(sqs, refuse={"d3"})
    result = IndexQueue(index_queues.queue_url, sqs_client=client).upsert(
        "alice", [{"id": f"d{i}", "text": "x"} for i in range(5)]
    )
    assert not result.ok
    assert [(f.document_id, f.code) for f in result.failed] == [("d3", "InternalError")]
    assert sorted(q.document_id for q in result.queued) == ["d0", "d1", "d2", "d4"]
    with pytest.raises(UpstreamError, match="1 of 5 index message"):
        result.raise_on_failure()


def test_a_failed_call_fails_its_entries_only(sqs: Any, index_queues: Queues) -> None:
    client = CountingClient(sqs, broken=True)
    result = IndexQueue(index_queues.queue_url, sqs_client=client).upsert(
        "alice", [{"id": f"d{i}", "text": "x"} for i in range(12)]
    )
    assert len(result.failed) == 12 and {f.code for f in result.failed} == {"ConnectionError"}


def test_a_message_over_the_limit_is_rejected_before_anything_is_sent(sqs: Any, index_queues: Queues) -> None:
    client = CountingClient(sqs)
    queue = IndexQueue(index_queues.queue_url, sqs_client=client)
    docs = [{"id": "fine", "text": "small"}, {"id": "huge", "text": "x" * SQS_MAX_MESSAGE_BYTES}]
    with pytest.raises(PayloadTooLarge) as caught:
        queue.upsert("alice", docs)
    assert (
        caught.value.field == "documents[1]"
        and "'huge'" in caught.value.message
        and "262144" in caught.value.message
    )
    assert client.batches == [] and queue_depth(sqs, index_queues.queue_url) == 0


def test_batches_also_respect_the_total_payload_limit(sqs: Any, index_queues: Queues) -> None:
    client = CountingClient(sqs)
    queue = IndexQueue(index_queues.queue_url, sqs_client=client)
    result = queue.upsert("alice", [{"id": f"d{i}", "text": "y" * 100_000} for i in range(5)])
    assert result.ok and client.batches == [2, 2, 1]


def test_invalid_documents_name_the_field(sqs: Any, index_queues: Queues) -> None:
    queue = IndexQueue(index_queues.queue_url, sqs_client=sqs)
    with pytest.raises(BadInput) as caught:
        queue.upsert("alice", [{"id": "ok", "text": "fine"}, {"id": "", "text": "x"}])
    assert caught.value.field == "documents[1].id"
    assert queue_depth(sqs, index_queues.queue_url) == 0


def test_default_client_uses_the_environment_endpoint(aws_env: str, sqs: Any, index_queues: Queues) -> None:
    result = IndexQueue(index_queues.queue_url).upsert("alice", [{"id": "d", "text": "via env"}])
    assert result.ok and queue_depth(sqs, index_queues.queue_url) == 1

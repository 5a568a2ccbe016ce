"""Operating the index queue's dead-letter queue: see what is parked and why, redrive it.

Why a message failed is kept in two places: the index function logs it with the SQS message
id, and records it in the failure ledger (``hflambda.vectors.ledger.FailureLedger``, which both vector
store backends keep; SQS keeps the message id when its redrive policy moves a message to the
DLQ). :meth:`DeadLetters.peek` joins the parked messages with those records; for a message without one (the function crashed or
timed out on it), it re-validates the body and says which case it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hflambda.messages import MessageInvalid, parse_message
from hflambda.vectors.ledger import FailureLedger

__all__ = ["DeadLetter", "DeadLetters", "RedriveResult", "dlq_url_of"]

_PEEK_SECONDS = 30


def dlq_url_of(sqs: Any, queue_url: str) -> str:
    """The DLQ URL named by the queue's RedrivePolicy (ValueError when it has none)."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]).get(
        "Attributes", {}
    )
    policy = attributes.get("RedrivePolicy")
    if not policy:
        raise ValueError(f"queue {queue_url} has no RedrivePolicy, so no dead-letter queue")
    arn = json.loads(policy)["deadLetterTargetArn"]
    parts = arn.split(":")
    return str(sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"])


@dataclass(frozen=True)
class DeadLetter:
    """One parked message with what is known about its failure."""

    message_id: str
    body: str
    sent_at: datetime | None
    receive_count: int
    summary: str
    reason: str
    reason_source: str  # "recorded" (by the index function), "validation" (re-checked now), "unknown"


@dataclass
class RedriveResult:
    """What a redrive moved."""

    moved: int = 0
    failed: int = 0


class DeadLetters:
    """The DLQ of the index queue.

    ``store`` is the failure ledger to read reasons from (the vector store is one); without
    it, ``peek`` re-validates bodies only.
    """

    def __init__(
        self, sqs: Any, queue_url: str, *, dlq_url: str | None = None, store: FailureLedger | None = None
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dlq_url = dlq_url or dlq_url_of(sqs, queue_url)
        self.ledger = store

    def count(self) -> int:
        """Approximate number of parked messages (visible + in flight)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def _receive(self, limit: int | None, visibility: int) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while limit is None or len(seen) < limit:
            want = 10 if limit is None else min(10, limit - len(seen))
            response = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=want,
                WaitTimeSeconds=0,
                VisibilityTimeout=visibility,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = [m for m in response.get("Messages") or [] if m["MessageId"] not in seen]
            if not messages:
                return
            for message in messages:
                seen.add(message["MessageId"])
                yield message

    def peek(self, limit: int | None = None) -> list[DeadLetter]:
        """Parked messages with their failure reasons; they stay in the DLQ (made visible again)."""
        messages = list(self._receive(limit, _PEEK_SECONDS))
        try:
            recorded = self.ledger.failure_reasons(m["MessageId"] for m in messages) if self.ledger else {}
        finally:
            self._release(messages)
        letters = []
        for message in messages:
            body = message.get("Body", "")
            attributes = message.get("Attributes") or {}
            sent = attributes.get("SentTimestamp")
            summary, invalid = _describe(body)
            record = recorded.get(message["MessageId"])
            if record is not None:
                reason, source = record.reason, "recorded"
            elif invalid is not None:
                reason, source = f"invalid message: {invalid}", "validation"
            else:
                reason = (
                    "no reason recorded: the body is valid, so the index function crashed or timed out "
                    "on its batch; search the function's logs for this message_id"
                )
                source = "unknown"
            letters.append(
                DeadLetter(
                    message_id=message["MessageId"],
                    body=body,
                    sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC)
                    if sent and sent.isdigit()
                    else None,
                    receive_count=int(attributes.get("ApproximateReceiveCount", "0") or 0),
                    summary=summary,
                    reason=reason,
                    reason_source=source,
                )
            )
        return letters

    def _release(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + 10])
            ]
            self.sqs.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=entries)

    def redrive(self, limit: int | None = None) -> RedriveResult:
        """Move parked messages back to the queue (send, then delete from the DLQ).

        A valid message without its own ``ts`` gets its original ``SentTimestamp`` as ``ts``,
        so the redrive cannot reorder it after a newer version of its document.
        """
        result = RedriveResult()
        batch: list[dict[str, Any]] = []
        for message in self._receive(limit, _PEEK_SECONDS * 2):
            batch.append(message)
            if len(batch) == 10:
                self._move(batch, result)
                batch = []
        if batch:
            self._move(batch, result)
        return result

    def _move(self, messages: list[dict[str, Any]], result: RedriveResult) -> None:
        entries = []
        for i, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": _pin_ts(message)}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        sent = [messages[int(ok["Id"])] for ok in response.get("Successful", [])]
        result.failed += len(response.get("Failed", []))
        if sent:
            self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(sent)],
            )
        result.moved += len(sent)


def _describe(body: str) -> tuple[str, str | None]:
    """A one-line summary of a body, and why it is invalid (None when valid)."""
    try:
        message = parse_message(body)
    except MessageInvalid as exc:
        preview = body[:60].replace("\n", " ")
        return f"unparsed: {preview!r}", exc.reason
    return f"{message.op} user={message.user_id} document={message.document_id}", None


def _pin_ts(message: dict[str, Any]) -> str:
    body = str(message.get("Body", ""))
    sent = (message.get("Attributes") or {}).get("SentTimestamp", "")
    try:
        parse_message(body)
        data = json.loads(body)
    except (MessageInvalid, ValueError):
        return body
    if data.get("ts") is None and str(sent).isdigit():
        data["ts"] = int(sent)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return body

"""The producer side of the index queue: what applications (and ``/v1/documents``) call.

```python
from hflambda.queue import IndexQueue

queue = IndexQueue(os.environ["HFLAMBDA_INDEX_QUEUE_URL"])
queue.upsert(user_id, [{"id": "note-1", "text": "...", "metadata": {"lang": "en"}}]).raise_on_failure()
```

Messages follow the contract in ``hflambda.messages``. Sends go through ``SendMessageBatch``
(10 entries and at most ``max_message_bytes`` per call); entries SQS refuses are reported per
document in the :class:`PublishResult`, never swallowed. A message larger than
``max_message_bytes`` (256 KiB, the SQS limit most queues are configured with) is rejected
with :class:`~hflambda.errors.PayloadTooLarge` before anything is sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from hflambda.errors import BadInput, PayloadTooLarge, QueueNotConfigured, UpstreamError
from hflambda.messages import DeleteMessage, Document, UpsertMessage, now_ms
from hflambda.settings import Settings, get_settings

__all__ = [
    "SQS_BATCH_ENTRIES",
    "SQS_MAX_MESSAGE_BYTES",
    "FailedEntry",
    "IndexQueue",
    "PublishResult",
    "QueuedEntry",
    "get_index_queue",
]

SQS_BATCH_ENTRIES = 10
SQS_MAX_MESSAGE_BYTES = 262_144
_REGION_RE = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com")


@dataclass(frozen=True)
class QueuedEntry:
    """A document whose message SQS accepted."""

    document_id: str
    message_id: str


@dataclass(frozen=True)
class FailedEntry:
    """A document whose message SQS refused (or that could not be sent)."""

    document_id: str
    code: str
    reason: str
    sender_fault: bool


@dataclass
class PublishResult:
    """Per document: queued (with the SQS message id) or failed (with SQS's reason)."""

    queued: list[QueuedEntry] = field(default_factory=list)
    failed: list[FailedEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every message was accepted."""
        return not self.failed

    def raise_on_failure(self) -> PublishResult:
        """Raise UpstreamError listing the failed documents, if any; else return self."""
        if self.failed:
            listing = "; ".join(f"{f.document_id}: {f.code}: {f.reason}" for f in self.failed[:10])
            raise UpstreamError(
                f"{len(self.failed)} of {len(self.failed) + len(self.queued)} index message(s) were not queued: {listing}",
                failed=[f.__dict__ for f in self.failed],
            )
        return self


class _Clock:
    """Epoch milliseconds, strictly increasing within this process.

    Two updates of one document published in the same millisecond by this process still get
    distinct, ordered versions.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(now_ms(), self._last + 1)
            return self._last


_clock = _Clock()


class IndexQueue:
    """Publishes index messages to one SQS queue."""

    def __init__(
        self,
        queue_url: str,
        *,
        sqs_client: Any | None = None,
        max_message_bytes: int = SQS_MAX_MESSAGE_BYTES,
    ) -> None:
        self.queue_url = queue_url
        self.max_message_bytes = max_message_bytes
        if sqs_client is None:
            import boto3

            match = _REGION_RE.match(queue_url)
            # endpoint (AWS_ENDPOINT_URL...), credentials and default region: boto3's own resolution
            sqs_client = boto3.client("sqs", region_name=match.group(1) if match else None)
        self.sqs = sqs_client

    def upsert(
        self,
        user_id: str,
        documents: Iterable[Document | Mapping[str, Any]],
        *,
        ts: int | None = None,
    ) -> PublishResult:
        """Queue an upsert per document (``{"id", "text", "metadata"}``) for ``user_id``.

        ``ts`` (epoch ms) versions the documents; default: now, strictly increasing per process.
        """
        messages: list[tuple[str, UpsertMessage]] = []
        for index, raw in enumerate(documents):
            try:
                document = raw if isinstance(raw, Document) else Document.model_validate(raw)
                message = UpsertMessage(
                    user_id=user_id, ts=ts if ts is not None else _clock(), document=document
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise BadInput(
                    f"documents[{index}].{where}: {first['msg']}", field=f"documents[{index}].{where}"
                ) from None
            messages.append((document.id, message))
        return self._publish(messages)

    def delete(self, user_id: str, document_ids: Iterable[str], *, ts: int | None = None) -> PublishResult:
        """Queue a delete per document id for ``user_id``."""
        messages: list[tuple[str, DeleteMessage]] = []
        for index, document_id in enumerate(document_ids):
            try:
                message = DeleteMessage(
                    user_id=user_id, ts=ts if ts is not None else _clock(), document_id=document_id
                )
            except ValidationError as exc:
                raise BadInput(
                    f"document_ids[{index}]: {exc.errors()[0]['msg']}", field=f"document_ids[{index}]"
                ) from None
            messages.append((document_id, message))
        return self._publish(messages)

    def _publish(self, messages: Sequence[tuple[str, UpsertMessage | DeleteMessage]]) -> PublishResult:
        bodies: list[tuple[str, str, int]] = []
        for index, (document_id, message) in enumerate(messages):
            body = message.to_body()
            size = len(body.encode("utf-8"))
            if size > self.max_message_bytes:
                raise PayloadTooLarge(
                    f"document {document_id!r} (documents[{index}]) makes a {size}-byte index message; "
                    f"SQS accepts at most {self.max_message_bytes} bytes. Split the text into several "
                    "documents. Nothing was queued.",
                    field=f"documents[{index}]",
                    size=size,
                    limit=self.max_message_bytes,
                )
            bodies.append((document_id, body, size))
        result = PublishResult()
        for batch in self._batches(bodies):
            self._send(batch, result)
        return result

    def _batches(self, bodies: Sequence[tuple[str, str, int]]) -> Iterable[list[tuple[str, str, int]]]:
        # SendMessageBatch: at most 10 entries, and their bodies together within the size limit
        batch: list[tuple[str, str, int]] = []
        total = 0
        for entry in bodies:
            if batch and (len(batch) == SQS_BATCH_ENTRIES or total + entry[2] > self.max_message_bytes):
                yield batch
                batch, total = [], 0
            batch.append(entry)
            total += entry[2]
        if batch:
            yield batch

    def _send(self, batch: Sequence[tuple[str, str, int]], result: PublishResult) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, (_doc, body, _size) in enumerate(batch)]
        try:
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:  # the whole call failed: every entry of it is reported failed
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            for document_id, _body, _size in batch:
                result.failed.append(FailedEntry(document_id, str(code), str(exc), sender_fault=False))
            return
        for ok in response.get("Successful", []):
            result.queued.append(QueuedEntry(batch[int(ok["Id"])][0], ok["MessageId"]))
        for bad in response.get("Failed", []):
            result.failed.append(
                FailedEntry(
                    batch[int(bad["Id"])][0],
                    str(bad.get("Code", "")),
                    str(bad.get("Message", "")),
                    bool(bad.get("SenderFault", False)),
                )
            )


@lru_cache(maxsize=4)
def _queue_for(queue_url: str) -> IndexQueue:
    return IndexQueue(queue_url)


def get_index_queue(settings: Settings | None = None) -> IndexQueue:
    """The process-wide publisher for ``HFLAMBDA_INDEX_QUEUE_URL`` (QueueNotConfigured when unset)."""
    settings = settings or get_settings()
    if not settings.index_queue_url:
        raise QueueNotConfigured(
            "Document indexing is not configured: set HFLAMBDA_INDEX_QUEUE_URL to the index queue's URL."
        )
    return _queue_for(settings.index_queue_url)

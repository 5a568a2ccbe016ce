"""A local stand-in for Lambda's SQS event source mapping (``hflambda dev`` and tests).

It polls a real SQS API (in development: a moto server on loopback), builds the event Lambda
would send (``Records`` with ``messageId``, ``receiptHandle``, ``body``, ``attributes``
including ``ApproximateReceiveCount`` and ``SentTimestamp``, ``messageAttributes``,
``md5OfBody``, ``eventSource``, ``eventSourceARN``, ``awsRegion``), calls the handler found by
its dotted path, and then does what the event source mapping does with
``ReportBatchItemFailures``:

- handler returned: delete every record not listed in ``batchItemFailures``; listed ones
  stay in flight and reappear after the queue's visibility timeout;
- handler raised (a function error), or listed an id that is not in the batch: delete
  nothing, the whole batch reappears.

Moving a message to the DLQ after ``maxReceiveCount`` receives is the queue's own redrive
policy, applied by SQS (and by moto) on receive — exactly as in AWS; the poller does not
imitate it.

```python
with Poller(queue_url, "functions.index.handler.handler") as poller:
    ...                       # polls in a background thread until the block ends
poller.drain(timeout=60)      # or: poll in this thread until the queue is empty
```
"""

from __future__ import annotations

import hashlib
import importlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from hflambda.telemetry import logger

__all__ = ["LocalContext", "Poller", "PollerStats", "build_event", "resolve_handler"]

Handler = Callable[[dict[str, Any], Any], Any]


def resolve_handler(target: str | Handler) -> Handler:
    """The handler for ``"package.module.function"`` (imported by name), or ``target`` itself."""
    if callable(target):
        return target
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {target!r} must be a dotted path like 'functions.index.handler.handler'")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{target} is not callable")
    return function  # type: ignore[no-any-return]


@dataclass
class LocalContext:
    """The LambdaContext attributes handlers and Powertools read."""

    function_name: str = "hflambda-index"
    timeout_seconds: float = 60.0
    memory_limit_in_mb: int = 2048
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:hflambda-index"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/hflambda-index"
    log_stream_name: str = "local"
    _deadline: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (local, unenforced) timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _lambda_attributes(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    converted = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        converted[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return converted


def build_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The SQS event Lambda builds from ReceiveMessage results."""
    region = queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else ""
    records = []
    for message in messages:
        body = message.get("Body", "")
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": body,
                "attributes": dict(message.get("Attributes") or {}),
                "messageAttributes": _lambda_attributes(message),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode("utf-8")).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


@dataclass
class PollerStats:
    """Counters since the poller was created."""

    invocations: int = 0
    records: int = 0
    deleted: int = 0
    failed_records: int = 0
    function_errors: int = 0
    last_error: str | None = None


class Poller:
    """Polls one queue and invokes one handler, like an event source mapping (concurrency 1)."""

    def __init__(
        self,
        queue_url: str,
        handler: str | Handler = "functions.index.handler.handler",
        *,
        sqs_client: Any | None = None,
        batch_size: int = 10,
        batching_window: float = 0.0,
        wait_seconds: int = 1,
        function_timeout: float = 60.0,
        error_backoff: float = 1.0,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1..10000 (the event source mapping's BatchSize range)")
        if sqs_client is None:
            import boto3

            sqs_client = boto3.client("sqs")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.handler_target = handler
        self._handler: Handler | None = None
        self.batch_size = batch_size
        self.batching_window = batching_window
        self.wait_seconds = wait_seconds
        self.function_timeout = function_timeout
        self.error_backoff = error_backoff
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue_arn: str | None = None

    # --- one poll ----------------------------------------------------------------------

    @property
    def handler(self) -> Handler:
        """The handler, imported by name on first use."""
        if self._handler is None:
            self._handler = resolve_handler(self.handler_target)
        return self._handler

    @property
    def queue_arn(self) -> str:
        """The queue's ARN (the events' ``eventSourceARN``)."""
        if self._queue_arn is None:
            attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            self._queue_arn = str(attributes["Attributes"]["QueueArn"])
        return self._queue_arn

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def receive_batch(self, wait_seconds: int | None = None) -> list[dict[str, Any]]:
        """Up to ``batch_size`` messages, like the event source mapping gathers them.

        Beyond 10 (one ReceiveMessage), it keeps receiving until the batch is full, the
        queue has nothing more, or ``batching_window`` seconds have passed
        (``MaximumBatchingWindowInSeconds``).
        """
        messages = self._receive(self.batch_size, self.wait_seconds if wait_seconds is None else wait_seconds)
        deadline = time.monotonic() + self.batching_window
        while messages and len(messages) < self.batch_size:
            more = self._receive(self.batch_size - len(messages), 0)
            if more:
                messages.extend(more)
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return messages

    def poll_once(self, wait_seconds: int | None = None) -> int:
        """Receive one batch, invoke the handler, delete what succeeded; returns records received."""
        messages = self.receive_batch(wait_seconds)
        if not messages:
            return 0
        event = build_event(messages, self.queue_arn)
        self.stats.invocations += 1
        self.stats.records += len(messages)
        try:
            result = self.handler(event, LocalContext(timeout_seconds=self.function_timeout))
        except Exception as exc:  # a function error: the whole batch returns to the queue
            self.stats.function_errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "index handler raised; the whole batch will be redelivered",
                extra={"error": self.stats.last_error, "message_ids": [m["MessageId"] for m in messages]},
            )
            return len(messages)
        failed = self._failed_ids(result, {m["MessageId"] for m in messages})
        if failed is None:
            return len(messages)
        self.stats.failed_records += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        self._delete(done)
        return len(messages)

    def _failed_ids(self, result: Any, batch_ids: set[str]) -> set[str] | None:
        """Ids reported failed; None when the response fails the whole batch (as Lambda does)."""
        if not result:
            return set()
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if failures is None:
            return set()
        ids = set()
        for item in failures:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not identifier or identifier not in batch_ids:
                self.stats.function_errors += 1
                self.stats.last_error = f"invalid batchItemFailures entry {item!r}"
                logger.warning(
                    "handler reported an unknown itemIdentifier; the whole batch will be redelivered",
                    extra={"item": repr(item)},
                )
                return None
            ids.add(str(identifier))
        return ids

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            self.stats.deleted += len(response.get("Successful", []))
            for bad in response.get("Failed", []):
                logger.warning(
                    "could not delete a processed message; it will be redelivered", extra={"failure": bad}
                )

    # --- loops -------------------------------------------------------------------------

    def pending(self) -> int:
        """Messages in the queue: visible + in flight + delayed."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def drain(self, timeout: float = 120.0) -> PollerStats:
        """Poll in this thread until the queue holds nothing (TimeoutError after ``timeout`` s).

        Messages in flight (failed ones waiting out their visibility timeout) count as not
        drained: they come back, and end either processed or in the DLQ.
        """
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"queue not drained after {timeout} s: {self.pending()} message(s) left; {self.stats}"
                )
            if self.poll_once() == 0 and self.pending() == 0:
                return self.stats

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # SQS unreachable etc.: keep the dev server alive, back off
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("poller could not poll the queue", extra={"error": self.stats.last_error})
                self._stop.wait(self.error_backoff)

    def start(self) -> Poller:
        """Poll in a daemon thread until ``stop()``."""
        if self._thread is not None and self._thread.is_alive():
            return self
        _ = self.handler  # import errors surface here, not in the thread
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hflambda-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling; waits for the current poll (at most ``wait_seconds`` + one invocation)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.wait_seconds + self.function_timeout)
            self._thread = None

    def __enter__(self) -> Poller:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m hflambda.poller --queue-url URL [--handler dotted.path]``: poll until SIGTERM/SIGINT."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m hflambda.poller", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--queue-url", required=True, help="The SQS queue to poll.")
    parser.add_argument(
        "--handler", default="functions.index.handler.handler", help="Dotted path of the Lambda handler."
    )
    parser.add_argument("--batch-size", type=int, default=10, help="Records per invocation (1..10000).")
    parser.add_argument(
        "--batching-window", type=float, default=0.0, help="Seconds to gather a batch over 10 records."
    )
    parser.add_argument("--wait-seconds", type=int, default=1, help="Long-poll wait per ReceiveMessage.")
    args = parser.parse_args(argv)
    poller = Poller(
        args.queue_url,
        args.handler,
        batch_size=args.batch_size,
        batching_window=args.batching_window,
        wait_seconds=args.wait_seconds,
    )
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logger.info("poller started", extra={"queue_url": args.queue_url, "handler": args.handler})
    poller.start()
    stop.wait()
    poller.stop()
    logger.info("poller stopped", extra={"stats": poller.stats.__dict__})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

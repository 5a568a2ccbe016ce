"""The local event source mapping against SQS (moto): events, deletes, redelivery, DLQ."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from hflambda.poller import LocalContext, Poller, resolve_handler
from tests.fixtures.aws import make_queues, queue_depth

pytestmark = pytest.mark.integration


class Recorder:
    """A handler that records events and fails the records whose body says so."""

    def __init__(self, *, crash: bool = False, bogus: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.crash = crash
        self.bogus = bogus

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        assert context.get_remaining_time_in_millis() > 0 and context.aws_request_id
        if self.crash:
            raise RuntimeError("boom")
        if self.bogus:
            return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"
            ]
        }


def send(sqs: Any, queue_url: str, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
        )


def dlq_bodies(sqs: Any, dlq_url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    return sorted(m["Body"] for m in messages)


def test_event_has_the_lambda_shape_and_successes_are_deleted(sqs: Any) -> None:
    queues = make_queues(sqs)
    send(sqs, queues.queue_url, "a", "b")
    recorder = Recorder()
    poller = Poller(queues.queue_url, recorder, sqs_client=sqs, wait_seconds=0)
    poller.drain(timeout=30)
    records = [r for e in recorder.events for r in e["Records"]]
    assert sorted(r["body"] for r in records) == ["a", "b"]
    record = records[0]
    assert set(record) >= {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].startswith(
        "arn:aws:sqs:us-east-1:"
    )
    assert (
        record["attributes"]["ApproximateReceiveCount"] == "1"
        and record["attributes"]["SentTimestamp"].isdigit()
    )
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert record["awsRegion"] == "us-east-1"
    assert queue_depth(sqs, queues.queue_url) == 0 and poller.stats.deleted == 2


def test_failed_records_reappear_then_land_in_the_dlq(sqs: Any) -> None:
    queues = make_queues(sqs, visibility_timeout=1, max_receive_count=2)
    send(sqs, queues.queue_url, "ok", "fail")
    recorder = Recorder()
    poller = Poller(queues.queue_url, recorder, sqs_client=sqs, wait_seconds=1)
    poller.drain(timeout=30)
    seen = [
        (r["body"], r["attributes"]["ApproximateReceiveCount"]) for e in recorder.events for r in e["Records"]
    ]
    assert ("ok", "1") in seen and ("fail", "1") in seen and ("fail", "2") in seen
    assert ("ok", "2") not in seen  # a success is deleted, never redelivered
    assert dlq_bodies(sqs, queues.dlq_url) == ["fail"]


def test_a_crashing_handler_returns_the_whole_batch(sqs: Any) -> None:
    queues = make_queues(sqs, visibility_timeout=1, max_receive_count=2)
    send(sqs, queues.queue_url, "x", "y")
    poller = Poller(queues.queue_url, Recorder(crash=True), sqs_client=sqs, wait_seconds=1)
    poller.drain(timeout=30)
    assert poller.stats.function_errors >= 2 and poller.stats.deleted == 0
    assert dlq_bodies(sqs, queues.dlq_url) == ["x", "y"]


def test_an_unknown_item_identifier_fails_the_whole_batch_like_lambda(sqs: Any) -> None:
    queues = make_queues(sqs, visibility_timeout=1, max_receive_count=1)
    send(sqs, queues.queue_url, "x")
    poller = Poller(queues.queue_url, Recorder(bogus=True), sqs_client=sqs, wait_seconds=1)
    poller.drain(timeout=30)
    assert poller.stats.deleted == 0 and "invalid batchItemFailures" in str(poller.stats.last_error)
    assert dlq_bodies(sqs, queues.dlq_url) == ["x"]


def test_background_polling_stops_cleanly(sqs: Any) -> None:
    queues = make_queues(sqs)
    recorder = Recorder()
    with Poller(queues.queue_url, recorder, sqs_client=sqs, wait_seconds=1) as poller:
        send(sqs, queues.queue_url, json.dumps({"n": 1}))
        deadline = time.monotonic() + 20
        while poller.stats.deleted < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        thread = poller._thread
    assert poller.stats.deleted == 1
    assert thread is not None and not thread.is_alive()


def test_batches_over_ten_are_gathered_from_several_receives(sqs: Any) -> None:
    queues = make_queues(sqs)
    for start in range(0, 25, 10):
        sqs.send_message_batch(
            QueueUrl=queues.queue_url,
            Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(min(10, 25 - start))],
        )
    recorder = Recorder()
    poller = Poller(
        queues.queue_url, recorder, sqs_client=sqs, batch_size=20, batching_window=0.2, wait_seconds=0
    )
    poller.drain(timeout=30)
    assert [len(e["Records"]) for e in recorder.events] == [20, 5]
    assert len({r["messageId"] for e in recorder.events for r in e["Records"]}) == 25


def test_handlers_are_resolved_by_dotted_path() -> None:
    assert resolve_handler("json.dumps") is json.dumps
    with pytest.raises(ValueError, match="dotted path"):
        resolve_handler("handler")
    assert LocalContext(timeout_seconds=5).get_remaining_time_in_millis() <= 5000


def test_poller_process_as_hflambda_dev_runs_it(sqs: Any, aws_env: str, tmp_path: Any) -> None:
    """``python -m hflambda.poller --queue-url ... --handler ...`` polls until SIGTERM, then exits 0."""
    import os
    import signal
    import subprocess
    import sys

    from tests.fixtures.models import REPO

    queues = make_queues(sqs)
    out = tmp_path / "bodies.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SQS_HANDLER_OUT": str(out),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    argv = [
        sys.executable,
        "-m",
        "hflambda.poller",
        "--queue-url",
        queues.queue_url,
        "--handler",
        "tests.fakes.sqs_handler.handler",
    ]
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        send(sqs, queues.queue_url, "one", "two")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and queue_depth(sqs, queues.queue_url) > 0:
            time.sleep(0.2)
        assert queue_depth(sqs, queues.queue_url) == 0
        assert sorted(out.read_text().split()) == ["one", "two"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output.decode()[-2000:]

"""The index Lambda handler with the real ONNX MiniLM: partial batch failures, not-warmed
behaviour, and the whole path through SQS (moto) and the local poller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from hflambda.poller import LocalContext, Poller, build_event
from hflambda.queue import IndexQueue
from hflambda.vectors import VectorSpace, get_vector_store
from tests.fixtures.aws import make_queues
from tests.fixtures.models import Warmed, clear_caches, fresh_module

pytestmark = pytest.mark.integration

DOCS = {
    "pets": "The kitten curled up and slept on the warm sofa all afternoon.",
    "money": "Quarterly revenue grew five percent thanks to strong subscription sales.",
    "space": "The rocket reached orbit and deployed three weather satellites.",
}


def sqs_message(message_id: str, body: str, *, receives: int = 1) -> dict[str, Any]:
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1700000000000"},
    }


def upsert(doc: str, text: str, user: str = "alice", ts: int = 1) -> str:
    return json.dumps(
        {
            "v": 1,
            "op": "upsert",
            "user_id": user,
            "ts": ts,
            "document": {"id": doc, "text": text, "metadata": {"topic": doc}},
        }
    )


@pytest.fixture
def index_env(serve_env: Warmed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("HFLAMBDA_VECTOR_URI", str(tmp_path / "vectors"))
    clear_caches()
    yield fresh_module("functions.index.handler")
    clear_caches()


def search(module: ModuleType, user: str, query: str, **options: Any) -> list[str]:
    embedder = module.indexer.embedder()
    vector = embedder.embed([query])[0]
    return [
        h.document_id
        for h in get_vector_store().search(user, vector, space=VectorSpace.of(embedder), **options)
    ]


def test_handler_reports_exactly_the_failed_records(index_env: ModuleType) -> None:
    messages = [sqs_message(name, upsert(name, text)) for name, text in DOCS.items()]
    messages += [sqs_message("bad-json", "{oops"), sqs_message("bad-op", json.dumps({"v": 1, "op": "nope"}))]
    response = index_env.handler(
        build_event(messages, "arn:aws:sqs:us-east-1:000000000000:q"), LocalContext()
    )
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["bad-json", "bad-op"]
    assert search(index_env, "alice", "a cat napping on the couch")[0] == "pets"
    assert search(index_env, "alice", "rocket launch", top_k=1) == ["space"]
    assert search(index_env, "alice", "anything", filter={"topic": "money"}) == ["money"]
    assert search(index_env, "bob", "a cat napping on the couch") == []
    # all good: an empty failure list
    ok = index_env.handler(
        build_event([sqs_message("again", upsert("pets", DOCS["pets"]))], "arn:aws:sqs:us-east-1:0:q"),
        LocalContext(),
    )
    assert ok == {"batchItemFailures": []}


def test_not_warmed_fails_every_record_with_the_reason(
    serve_env: Warmed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", str(tmp_path / "empty-store"))
    monkeypatch.setenv("HFLAMBDA_VECTOR_URI", str(tmp_path / "vectors"))
    clear_caches()
    module = fresh_module("functions.index.handler")
    messages = [sqs_message("m1", upsert("d", "text")), sqs_message("m2", upsert("e", "text"))]
    response = module.handler(build_event(messages, "arn:aws:sqs:us-east-1:0:q"), LocalContext())
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m1", "m2"]
    reasons = get_vector_store().failure_reasons(["m1", "m2"])
    assert "not ready" in reasons["m1"].reason and "run warmup" in reasons["m1"].reason
    clear_caches()


def test_queue_to_search_through_the_poller_and_the_dlq_with_reasons(index_env: ModuleType, sqs: Any) -> None:
    from hflambda.cli import app

    queues = make_queues(sqs, visibility_timeout=1, max_receive_count=2)
    producer = IndexQueue(queues.queue_url)
    assert producer.upsert("alice", [{"id": k, "text": v} for k, v in DOCS.items()]).ok
    assert producer.upsert("bob", [{"id": "bobs", "text": "Bob's note about kittens and sofas."}]).ok
    sqs.send_message(QueueUrl=queues.queue_url, MessageBody='{"v":1,"op":"upsert","user_id":"alice"}')
    producer.delete("alice", ["money"])
    Poller(queues.queue_url, "functions.index.handler.handler", sqs_client=sqs).drain(timeout=60)
    assert sorted(search(index_env, "alice", "kittens", top_k=10)) == ["pets", "space"]
    assert search(index_env, "bob", "kittens") == ["bobs"]

    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list", "--queue-url", queues.queue_url, "--json"])
    assert listed.exit_code == 0, listed.output
    letters = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    assert len(letters) == 1
    assert letters[0]["reason_source"] == "recorded"
    assert "document: Field required" in letters[0]["reason"]
    table = runner.invoke(app, ["dlq", "list", "--queue-url", queues.queue_url], env={"COLUMNS": "300"})
    assert "document: Field required" in table.stdout and letters[0]["message_id"][:8] in table.stdout
    # the listing left it parked; redrive moves it back
    moved = runner.invoke(app, ["dlq", "redrive", "--queue-url", queues.queue_url])
    assert moved.exit_code == 0 and "moved 1 message" in moved.stdout
    assert (
        runner.invoke(app, ["dlq", "list", "--queue-url", queues.queue_url]).stdout.strip()
        == "the DLQ is empty"
    )

"""The index image under the RIE: an SQS batch with a bad record in it, on the store the warmup
image wrote (read-only), writing vectors to S3 Vectors + DynamoDB on the loopback moto."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from containers.rie import Invocation, LambdaContainer
from tests.images import events
from tests.images.conftest import INIT_LIMIT_MS, Stage, WarmupRuns, empty_store
from tests.images.test_onnx_session_image import HOST_CPUS, session_lines


def upsert(doc_id: str, text: str, user: str = "user_bob") -> str:
    return json.dumps(
        {"v": 1, "op": "upsert", "user_id": user, "document": {"id": doc_id, "text": text, "metadata": {}}}
    )


@pytest.fixture(scope="module")
def indexed(
    stage: Stage, warmed: WarmupRuns
) -> Iterator[tuple[LambdaContainer, dict[str, object], Invocation]]:
    assert warmed.scheduled.payload["ok"] is True, warmed.scheduled.raw[-2000:]
    batch = events.sqs_batch(
        upsert("doc-1", "Lambda images stay lean: no torch when serving."),
        "{not json at all",
        upsert("doc-2", "The store is mounted read-only for the index function."),
    )
    with stage.run("index") as fn:
        yield fn, batch, fn.invoke(batch)


def test_a_bad_record_fails_alone(indexed: tuple[LambdaContainer, dict[str, object], Invocation]) -> None:
    _fn, batch, result = indexed
    assert result.status == 200 and result.function_error is None, result.raw[-3000:]
    bad = batch["Records"][1]["messageId"]  # type: ignore[index]
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": bad}]}


def test_the_good_records_reach_the_catalogue(
    stage: Stage, indexed: tuple[LambdaContainer, dict[str, object], Invocation]
) -> None:
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=stage.aws["AWS_ENDPOINT_URL"],
        region_name=stage.aws["AWS_REGION"],
        aws_access_key_id=stage.aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stage.aws["AWS_SECRET_ACCESS_KEY"],
    )
    items = dynamodb.scan(TableName=stage.aws["HFLAMBDA_VECTOR_TABLE"])["Items"]
    text = json.dumps(items, default=repr)  # compressed text arrives as bytes
    assert "doc-1" in text and "doc-2" in text and "user_bob" in text, text[:2000]


def test_the_index_function_embeds_in_throughput_mode(
    indexed: tuple[LambdaContainer, dict[str, object], Invocation],
) -> None:
    # one-CPU runs, as many at once as the function has CPUs, no spinning (engines/onnx.py)
    fn, _, _ = indexed
    records = session_lines(fn.logs())
    assert records, fn.logs()[-2000:]
    for record in records:
        assert record["mode"] == "throughput" and record["parallel_runs"] == HOST_CPUS, record
        assert record["intra_op_threads"] == 1 and record["inter_op_threads"] == 1, record
        assert record["intra_op_spinning"] is False, record


def test_index_init_is_within_lambdas_limit(
    indexed: tuple[LambdaContainer, dict[str, object], Invocation],
) -> None:
    fn, _, _ = indexed
    init = fn.init_duration_ms()
    assert init is not None and 0 < init < INIT_LIMIT_MS * 0.8, fn.logs()[-2000:]


def test_an_unwarmed_store_fails_every_record_or_init_never_hangs(
    stage: Stage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = empty_store(tmp_path_factory, "empty-index-store")
    batch = events.sqs_batch(upsert("doc-x", "nothing can embed this yet"))
    with stage.run("index", store=empty) as fn:
        result = fn.invoke(batch, timeout=90)
    if result.function_error is not None:  # init refused: Lambda reports the init error type
        assert result.error_type and result.error_type.startswith(("Runtime.", "ModelNotReady")), result.raw
    else:  # or every record is reported failed, so SQS retries them and the DLQ parks them
        ids = [r["messageId"] for r in batch["Records"]]
        assert result.payload == {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}, result.raw
    assert result.seconds < 60

"""The predict image under the RIE: HTTP API payload 2.0 events with authorizer claims, on the
store the warmup image wrote (mounted read-only), as the EFS access point's user."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from containers.rie import Invocation, LambdaContainer
from tests.images import events
from tests.images.conftest import AUDIENCE, INIT_LIMIT_MS, ISSUER, Stage, WarmupRuns, empty_store

SENTENCES = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."]


def claims(sub: str = "user_alice") -> dict[str, Any]:
    return events.jwt_claims(sub, issuer=ISSUER, audience=AUDIENCE)


def response(invocation: Invocation) -> tuple[int, Any]:
    """The HTTP response inside a Lambda proxy result: (statusCode, parsed body)."""
    assert invocation.status == 200 and invocation.function_error is None, invocation.raw[-3000:]
    payload = invocation.payload
    body = payload.get("body") or ""
    return int(payload["statusCode"]), json.loads(body) if body else None


@pytest.fixture(scope="module")
def predict(stage: Stage, warmed: WarmupRuns) -> Iterator[tuple[LambdaContainer, Invocation]]:
    assert warmed.scheduled.payload["ok"] is True, warmed.scheduled.raw[-2000:]
    with stage.run("predict") as fn:
        first = fn.invoke(events.http_api("GET", "/health"))
        yield fn, first


def test_health_answers_on_the_warmed_store(predict: tuple[LambdaContainer, Invocation]) -> None:
    _fn, first = predict
    status, body = response(first)
    assert status == 200
    assert body["models_ready"] == body["models_total"] == 2, body


def test_init_and_first_request_are_within_lambdas_limits(
    predict: tuple[LambdaContainer, Invocation],
) -> None:
    fn, _first = predict
    init = fn.init_duration_ms()
    assert init is not None and 0 < init < INIT_LIMIT_MS * 0.8, fn.logs()[-2000:]
    first_request = fn.invoke_durations_ms()[0]
    assert first_request < 5_000


def test_embeddings_with_authorizer_claims_as_strings(predict: tuple[LambdaContainer, Invocation]) -> None:
    fn, _ = predict
    event = events.http_api(
        "POST", "/v1/embeddings", body={"input": SENTENCES, "model": "embed"}, claims=claims()
    )
    status, body = response(fn.invoke(event))
    assert status == 200, body
    vectors = [item["embedding"] for item in body["data"]]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.hypot(*v) - 1) < 1e-3 for v in vectors)  # normalized

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2


def test_int8_model_serves_from_the_same_store(predict: tuple[LambdaContainer, Invocation]) -> None:
    fn, _ = predict
    event = events.http_api(
        "POST", "/v1/embeddings", body={"input": SENTENCES[:1], "model": "embed-int8"}, claims=claims()
    )
    status, body = response(fn.invoke(event))
    assert status == 200 and len(body["data"][0]["embedding"]) == 384, body


def test_a_request_without_authorizer_claims_is_refused(predict: tuple[LambdaContainer, Invocation]) -> None:
    fn, _ = predict
    status, body = response(fn.invoke(events.http_api("POST", "/v1/embeddings", body={"input": ["x"]})))
    assert status == 401, body


def test_a_document_is_queued_to_sqs(stage: Stage, predict: tuple[LambdaContainer, Invocation]) -> None:
    fn, _ = predict
    document = {"id": "doc-queued", "text": "Queued from the predict image.", "metadata": {"k": "v"}}
    status, body = response(
        fn.invoke(events.http_api("POST", "/v1/documents", body={"documents": [document]}, claims=claims()))
    )
    assert status == 202, body
    sqs = boto3.client(
        "sqs",
        endpoint_url=stage.aws["AWS_ENDPOINT_URL"],
        region_name=stage.aws["AWS_REGION"],
        aws_access_key_id=stage.aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stage.aws["AWS_SECRET_ACCESS_KEY"],
    )
    messages = sqs.receive_message(QueueUrl=stage.aws["QUEUE_URL"], MaxNumberOfMessages=10).get(
        "Messages", []
    )
    bodies = [json.loads(m["Body"]) for m in messages]
    assert any(
        b.get("document", {}).get("id") == "doc-queued" and b["user_id"] == "user_alice" for b in bodies
    ), bodies


def test_nothing_is_written_outside_tmp(stage: Stage, warmed: WarmupRuns) -> None:
    """With a writable root (docker diff sees every write), serving writes only to /tmp."""
    with stage.run("predict", read_only=False) as fn:
        response(fn.invoke(events.http_api("GET", "/health")))
        event = events.http_api(
            "POST", "/v1/embeddings", body={"input": SENTENCES, "model": "embed"}, claims=claims()
        )
        assert response(fn.invoke(event))[0] == 200
        assert fn.diff() == []


def test_an_unwarmed_store_answers_503_not_a_hang(
    stage: Stage, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = empty_store(tmp_path_factory, "empty-store")
    with stage.run("predict", store=empty) as fn:
        status, body = response(fn.invoke(events.http_api("GET", "/health"), timeout=60))
        assert status == 200 and body["models_ready"] == 0, body
        event = events.http_api(
            "POST", "/v1/embeddings", body={"input": ["x"], "model": "embed"}, claims=claims()
        )
        invocation = fn.invoke(event, timeout=60)
        status, body = response(invocation)
        assert status == 503, body
        assert invocation.seconds < 10


def test_a_broken_handler_is_an_init_error(stage: Stage) -> None:
    with stage.run("predict", handler="functions.predict.handler.no_such_handler") as fn:
        invocation = fn.invoke(events.http_api("GET", "/health"), timeout=60)
    assert invocation.function_error == "Unhandled", invocation.raw
    assert invocation.error_type == "Runtime.HandlerNotFound", invocation.raw
    assert invocation.seconds < 30


def test_a_missing_module_is_an_import_error(stage: Stage) -> None:
    with stage.run("predict", handler="functions.nothing_here.handler") as fn:
        invocation = fn.invoke(events.http_api("GET", "/health"), timeout=60)
    assert invocation.function_error == "Unhandled" and invocation.error_type == "Runtime.ImportModuleError"


def test_predict_serves_with_no_network_at_all(stage: Stage, warmed: WarmupRuns) -> None:
    with stage.run("predict", network="none") as fn:
        event = events.http_api(
            "POST", "/v1/embeddings", body={"input": SENTENCES[:1], "model": "embed"}, claims=claims()
        )
        status, body = response(fn.invoke(event))
    assert status == 200 and len(body["data"][0]["embedding"]) == 384

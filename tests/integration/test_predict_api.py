"""The predict API over HTTP with real bearer tokens: embeddings, predict, models, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DevIssuer
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.models import Warmed, clear_caches, fresh_module

pytestmark = pytest.mark.integration


@pytest.fixture
def client(serve_env: Warmed, auth_env: DevIssuer) -> Iterator[TestClient]:
    app = fresh_module("functions.predict.app").app
    token = auth_env.token("alice", azp=APP_ORIGIN)
    with TestClient(app, headers={"authorization": f"Bearer {token}"}) as test_client:
        yield test_client


def error_of(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}, body
    assert {"type", "message", "param", "details", "request_id"} <= set(body["error"])
    return dict(body["error"])


def test_embeddings_openai_shape(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"input": ["hello", "world"], "model": "embed"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "embed"
    assert [d["index"] for d in body["data"]] == [0, 1]
    vector = np.array(body["data"][0]["embedding"])
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    single = client.post("/v1/embeddings", json={"input": "hello", "model": "embed"}).json()
    assert np.allclose(single["data"][0]["embedding"], body["data"][0]["embedding"], atol=1e-5)


def test_base64_encoding(client: TestClient) -> None:
    import base64

    floats = client.post("/v1/embeddings", json={"input": "hi", "model": "embed"}).json()["data"][0][
        "embedding"
    ]
    encoded = client.post(
        "/v1/embeddings", json={"input": "hi", "model": "embed", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": [], "model": "embed"}, 422, "input"),
        ({"input": "", "model": "embed"}, 422, "input"),
        ({"input": [1, 2], "model": "embed"}, 400, "input"),  # token ids
        ({"input": ["ok", ""], "model": "embed"}, 422, "input"),
        ({"input": {"a": 1}, "model": "embed"}, 422, "input"),
        ({"model": "embed"}, 422, "input"),
        ({"input": "x"}, 422, "model"),
        ({"input": "x", "model": "embed", "dimensions": 12}, 400, "dimensions"),
        ({"input": ["fine", "word " * 400], "model": "embed"}, 400, "input[1]"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, body: dict[str, object], status: int, param: str
) -> None:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["param"] == param
    assert error["message"]


def test_truncation_on_request(client: TestClient) -> None:
    response = client.post(
        "/v1/embeddings", json={"input": ["word " * 400], "model": "embed", "truncate": True}
    )
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 256


def test_unknown_alias_lists_known_ones(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"input": "x", "model": "gpt-4"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["type"] == "model_not_found"
    assert "embed" in str(error["message"]) and "embed-int8" in str(error["message"])
    assert client.post("/v1/embeddings", json={"input": "x", "model": "classify"}).status_code == 404


def test_batch_over_limit_is_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    response = client.post("/v1/embeddings", json={"input": ["x"] * 2049, "model": "embed"})
    assert response.status_code == 413
    assert error_of(response)["param"] == "input"
    # float vectors of 384 dimensions: fewer than 2,048 fit Lambda's 6 MB; the 413 names the batch that fits
    response = client.post("/v1/embeddings", json={"input": ["x"] * 1000, "model": "embed"})
    assert response.status_code == 413
    error = error_of(response)
    assert (
        error["details"]["max_inputs"] == 670
        and "at most 670" in error["message"]
        and "base64 fits 2048" in error["message"]
    )
    fitting = client.post("/v1/embeddings", json={"input": ["x"] * 670, "model": "embed"})
    assert fitting.status_code == 200 and len(fitting.content) < 6_291_456
    # base64 (the openai SDK's default) takes OpenAI's full 2,048
    assert (
        len(
            client.post(
                "/v1/embeddings", json={"input": ["x"] * 2048, "model": "embed", "encoding_format": "base64"}
            ).json()["data"]
        )
        == 2048
    )


def test_token_id_inputs_are_a_400_naming_the_langchain_switch(client: TestClient) -> None:
    for tokens in ([[9906, 1917], [15339]], [9906, 1917]):
        response = client.post("/v1/embeddings", json={"input": tokens, "model": "embed"})
        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["param"] == "input" and "check_embedding_ctx_length=False" in str(error["message"])


def test_body_over_limit_is_413(client: TestClient) -> None:
    response = client.post(
        "/v1/embeddings", content=b"x" * 1_100_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["type"] == "payload_too_large"


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error_of(response)


def test_predict_classification_and_embeddings(client: TestClient) -> None:
    response = client.post("/v1/models/classify/predict", json={"inputs": ["good", "bad"], "top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "text-classification" and body["model"] == "classify"
    assert len(body["predictions"]) == 2 and all(len(row) == 2 for row in body["predictions"])
    assert {p["label"] for row in body["predictions"] for p in row} <= {"negative", "neutral", "positive"}
    everything = client.post("/v1/models/classify/predict", json={"inputs": ["good"], "top_k": None}).json()
    assert abs(sum(p["score"] for p in everything["predictions"][0]) - 1) < 1e-4
    embed = client.post("/v1/models/embed/predict", json={"inputs": ["good"]}).json()
    assert embed["task"] == "embeddings" and embed["dimensions"] == 384 and len(embed["embeddings"][0]) == 384
    missing = client.post("/v1/models/nope/predict", json={"inputs": ["x"]})
    assert missing.status_code == 404 and "classify" in str(error_of(missing)["message"])


def test_models_lists_readiness(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    states = {m["id"]: m for m in body["data"]}
    assert (
        states["embed"]["ready"] and states["embed"]["revision"] == "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    )
    assert states["classify"]["task"] == "text-classification"


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/health", headers={"authorization": ""})
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_not_warmed_model_is_503_with_retry_after(
    warmed: Warmed, auth_env: DevIssuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", str(tmp_path / "empty"))
    monkeypatch.setenv("HFLAMBDA_REGISTRY", str(warmed.registry))
    clear_caches()
    app = fresh_module("functions.predict.app").app
    client = TestClient(app, headers={"authorization": f"Bearer {auth_env.token('alice', azp=APP_ORIGIN)}"})
    response = client.post("/v1/embeddings", json={"input": "x", "model": "embed"})
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    error = error_of(response)
    assert (
        error["type"] == "model_not_ready"
        and "'embed'" in str(error["message"])
        and "warmup" in str(error["message"])
    )
    assert client.get("/health").json()["models_ready"] == 0
    clear_caches()

"""Auth through the real predict app: over HTTP (TestClient, bearer tokens) and through the Lambda
handler (API Gateway v2 events with and without authorizer claims).

The store is empty on purpose: a protected route that answered anything but 401 to a bad token
would have had to touch a model first, and would answer 503 instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from tests.fixtures.auth import APP_ORIGIN, BAD_TOKEN_NAMES, apigw_event, bad_tokens
from tests.fixtures.models import REPO, clear_caches, fresh_module

pytestmark = [
    pytest.mark.integration,
    # Powertools warns when an invocation adds no metric of its own (these never reach a model)
    pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning"),
]

DESCRIPTION = re.compile(r'^Bearer error="invalid_token", error_description="(?P<d>[^"]*)"$')
EMBED = {"model": "embed", "input": "hello"}


@dataclass
class Predict:
    client: TestClient
    handler: ModuleType


@pytest.fixture(scope="module")
def predict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predict]:
    """The predict app and Lambda handler, imported fresh against an empty model store."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HFLAMBDA_MODEL_STORE", str(tmp_path_factory.mktemp("empty-store")))
        patch.setenv("HFLAMBDA_REGISTRY", str(REPO / "models.toml"))
        patch.setenv("HFLAMBDA_PROFILE", "local")
        clear_caches()
        app_module = fresh_module("functions.predict.app")
        handler_module = fresh_module("functions.predict.handler")
        with TestClient(app_module.app) as client:
            yield Predict(client=client, handler=handler_module)
    clear_caches()


def described(response: Any) -> str:
    """The error_description of a 401/503 answer, after checking the header's shape."""
    match = DESCRIPTION.match(response.headers["www-authenticate"])
    assert match, response.headers["www-authenticate"]
    return match["d"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- over HTTP ----------------------------------------------------------------------------


def test_health_needs_no_token(predict: Predict, auth_settings: Callable[..., None]) -> None:
    assert predict.client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"), [("GET", "/v1/models", None), ("POST", "/v1/embeddings", EMBED)]
)
def test_no_token_is_401(method: str, path: str, body: Any, predict: Predict, auth_env: DevIssuer) -> None:
    response = predict.client.request(method, path, json=body)
    assert response.status_code == 401
    # RFC 6750 section 3.1: no credentials, so a bare challenge without an error code
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "invalid_token"
    assert "missing bearer token" in response.json()["error"]["message"]


def test_valid_token_passes(predict: Predict, auth_env: DevIssuer) -> None:
    headers = auth(auth_env.token("alice", azp=APP_ORIGIN))
    assert predict.client.get("/v1/models", headers=headers).status_code == 200
    # past auth, the (unwarmed) model is what answers
    response = predict.client.post("/v1/embeddings", json=EMBED, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "model_not_ready"


@pytest.fixture(scope="module")
def forged(dev_issuer: DevIssuer, attacker_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    assert dev_issuer.issuer
    return bad_tokens(dev_issuer, attacker_key, iss=dev_issuer.issuer, audience=DEV_AUDIENCE)


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_token_is_401_saying_why(
    name: str, forged: dict[str, Any], predict: Predict, auth_env: DevIssuer
) -> None:
    case = forged[name]
    for response in (
        predict.client.get("/v1/models", headers=auth(case.token)),
        predict.client.post("/v1/embeddings", json=EMBED, headers=auth(case.token)),
    ):
        assert response.status_code == 401, response.text
        assert described(response) == case.description
        assert response.json()["error"]["type"] == "invalid_token"
        assert case.token not in response.text


def test_unreachable_jwks_is_503_not_unverified(
    predict: Predict, dev_issuer: DevIssuer, auth_settings: Callable[..., None]
) -> None:
    auth_settings(issuer=dev_issuer.issuer, audience=DEV_AUDIENCE, jwks_url="http://127.0.0.1:9/jwks.json")
    response = predict.client.get("/v1/models", headers=auth(dev_issuer.token("alice")))
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert described(response).startswith("signing keys unavailable")
    assert response.json()["error"]["type"] == "auth_unavailable"


def test_no_issuer_configured_is_401(
    predict: Predict, dev_issuer: DevIssuer, auth_settings: Callable[..., None]
) -> None:
    response = predict.client.get("/v1/models", headers=auth(dev_issuer.token("alice")))
    assert response.status_code == 401
    assert described(response).startswith("authentication is not configured")
    assert response.json()["error"]["type"] == "auth_not_configured"


# --- through the Lambda handler -----------------------------------------------------------


@dataclass
class Context:
    """The parts of a LambdaContext Powertools reads."""

    function_name: str = "predict"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:predict"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def invoke(predict: Predict, event: dict[str, Any]) -> dict[str, Any]:
    return predict.handler.handler(event, Context())  # type: ignore[no-any-return]


def test_lambda_with_authorizer_claims_is_served(
    predict: Predict, auth_settings: Callable[..., None]
) -> None:
    claims = {"sub": "user_2abc", "iss": "https://clerk.example", "aud": "[hflambda]", "exp": "1900000000"}
    response = invoke(predict, apigw_event("GET", "/v1/models", claims=claims))
    assert response["statusCode"] == 200, response
    assert {m["id"] for m in json.loads(response["body"])["data"]} >= {"embed"}


@pytest.mark.parametrize(
    ("method", "path", "body"), [("GET", "/v1/models", None), ("POST", "/v1/embeddings", EMBED)]
)
def test_lambda_without_claims_is_401_even_with_a_valid_token(
    method: str, path: str, body: Any, predict: Predict, auth_env: DevIssuer
) -> None:
    token = auth_env.token("alice", azp=APP_ORIGIN)
    assert predict.client.get("/v1/models", headers=auth(token)).status_code == 200  # valid off Lambda
    event = apigw_event(
        method, path, headers={"authorization": f"Bearer {token}"}, body=json.dumps(body) if body else None
    )
    response = invoke(predict, event)
    assert response["statusCode"] == 401, response
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert "authorizer" in DESCRIPTION.match(headers["www-authenticate"])["d"]  # type: ignore[index]


def test_lambda_health_needs_no_claims(predict: Predict, auth_settings: Callable[..., None]) -> None:
    assert invoke(predict, apigw_event("GET", "/health"))["statusCode"] == 200

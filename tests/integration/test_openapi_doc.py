"""The committed OpenAPI document (docs/openapi.json) and what it promises about errors.

The file equals the app's schema; every operation has a pinned snake_case id; every error
response is documented with the one ``ErrorResponse`` body; and each route documents exactly
the error statuses it answers: every documented status is produced here by a real request
(no token, a body over the limit, an unknown alias, a broken provider, ...) and no other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from tests.fakes.provider import Behaviour, FakeProvider
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.models import REPO, Warmed, clear_caches, fresh_module

pytestmark = pytest.mark.integration

DOCUMENT = REPO / "docs" / "openapi.json"
STALE = "docs/openapi.json does not match the app's OpenAPI schema: run `make openapi` and commit the file"

OPERATION_IDS = {
    ("get", "/health"): "get_health",
    ("get", "/v1/models"): "list_models",
    ("get", "/v1/models/{model_id}"): "retrieve_model",
    ("post", "/v1/embeddings"): "create_embeddings",
    ("post", "/v1/models/{alias}/predict"): "predict",
    ("post", "/v1/chat/completions"): "create_chat_completion",
    ("post", "/v1/documents"): "add_documents",
    ("delete", "/v1/documents/{document_id}"): "delete_document",
    ("post", "/v1/search"): "search_documents",
}
ERROR_BODY = {"$ref": "#/components/schemas/ErrorResponse"}
MAX_BODY_BYTES = 4096

# an embedding model in the registry but not in the store; remote chat models on the fake provider
EXTRA_MODELS = """
[models.cold-embed]
repo = "sentence-transformers/all-MiniLM-L6-v2"
revision = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
task = "embeddings"
max_tokens = 256
""" + "".join(
    f"""
[models.{alias}]
repo = "acme/{alias}"
task = "text-generation"
engine = "remote"
base_url = "@PROVIDER@"
provider_model = "acme/{alias}"
timeout_seconds = {timeout}
"""
    for alias, timeout in (("broken", 5), ("busy", 5), ("hang", 1))
)
NO_EMBEDDINGS = """
[models.broken]
repo = "acme/broken"
task = "text-generation"
engine = "remote"
base_url = "@PROVIDER@"
provider_model = "acme/broken"
"""


def app_schema(app: FastAPI) -> dict[str, Any]:
    return json.loads(json.dumps(app.openapi()))


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The predict app over an empty store (the schema needs no model)."""
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("HFLAMBDA_REGISTRY", str(REPO / "models.toml"))
    clear_caches()
    yield fresh_module("functions.predict.app").app
    clear_caches()


def test_committed_document_matches_the_app(app: FastAPI) -> None:
    from functions.predict.openapi import render

    assert DOCUMENT.read_text(encoding="utf-8") == render(app), STALE


def test_document_is_deterministic_and_machine_free(app: FastAPI, tmp_path: Path) -> None:
    from functions.predict.openapi import render

    text = render(app)
    assert text == render(app) and text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == app_schema(app)
    for local in (str(REPO), str(tmp_path), str(Path.home()), "/tmp/"):
        assert local not in text, f"the document embeds a path of this machine: {local}"


def test_every_operation_has_its_stable_snake_case_id(app: FastAPI) -> None:
    schema = app_schema(app)
    found = {
        (method, path): op["operationId"]
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    assert found == OPERATION_IDS
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", op) for op in found.values())


def test_every_documented_error_has_the_error_body(app: FastAPI) -> None:
    schema = app_schema(app)
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's 422 body, never sent here
    errors = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith("2"):
                    continue
                errors += 1
                assert answer["content"]["application/json"]["schema"] == ERROR_BODY, (
                    f"{method} {path} {status}"
                )
                assert answer["description"], f"{method} {path} {status}"
    assert errors > 40


def test_search_documents_the_errors_it_answers(app: FastAPI) -> None:
    responses = app_schema(app)["paths"]["/v1/search"]["post"]["responses"]
    # 404: no default embedding model; 502: the vector store failed; 413: the body guard's limit
    assert sorted(int(s) for s in responses if not s.startswith("2")) == [
        400,
        401,
        404,
        413,
        415,
        422,
        502,
        503,
    ]


# --- each documented status, produced by a real request --------------------------------------


@dataclass
class Api:
    client: TestClient
    token: dict[str, str]
    auth_settings: Callable[..., None]
    issuer: DevIssuer
    no_embeddings: Path
    tmp_path: Path

    def call(self, method: str, path: str, *, anonymous: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {**({} if anonymous else self.token), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    @contextmanager
    def env(self, **values: str) -> Iterator[None]:
        """Settings changed for one request (the pool is rebuilt from them)."""
        if not values:
            yield
            return
        with pytest.MonkeyPatch.context() as patch:
            for name, value in values.items():
                patch.setenv(
                    f"HFLAMBDA_{name.upper()}", value.replace("@FILE@", str(self.tmp_path / "not-a-folder"))
                )
            clear_caches()
            yield
        clear_caches()

    @contextmanager
    def jwks_unreachable(self) -> Iterator[None]:
        trusted = {"issuer": self.issuer.issuer, "audience": DEV_AUDIENCE, "authorized_parties": APP_ORIGIN}
        self.auth_settings(**trusted, jwks_url="http://127.0.0.1:9/jwks.json")
        try:
            yield
        finally:
            self.auth_settings(**trusted, jwks_url=None)


Trigger = Callable[[Api, str, str], httpx.Response]


def no_token(api: Api, method: str, path: str) -> httpx.Response:
    return api.call(method, path, anonymous=True, **({"json": {}} if method == "post" else {}))


def auth_unavailable(api: Api, method: str, path: str) -> httpx.Response:
    with api.jwks_unreachable():
        return api.call(method, path)


def too_large(api: Api, method: str, path: str) -> httpx.Response:
    body = json.dumps({"pad": "x" * MAX_BODY_BYTES}).encode()
    return api.call(method, path, content=body, headers={"content-type": "application/json"})


def not_json(api: Api, method: str, path: str) -> httpx.Response:
    return api.call(
        method, path, content=b"input=hello", headers={"content-type": "application/x-www-form-urlencoded"}
    )


def body(payload: dict[str, Any], path: str | None = None, **env: str) -> Trigger:
    def send(api: Api, method: str, route: str) -> httpx.Response:
        with api.env(**env):
            return api.call(method, path or route, json=payload)

    return send


def to(path: str, **env: str) -> Trigger:
    def send(api: Api, method: str, _route: str) -> httpx.Response:
        with api.env(**env):
            return api.call(method, path)

    return send


def search_without_embedding_model(api: Api, method: str, path: str) -> httpx.Response:
    with api.env(registry=str(api.no_embeddings)):
        return api.call(method, path, json={"query": "hello"})


def delete_as_long_sub(api: Api, method: str, path: str) -> httpx.Response:
    # a sub over the index message's 256 characters; the queue URL is never reached
    token = api.issuer.token("s" * 300, azp=APP_ORIGIN)
    with api.env(index_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/never-sent"):
        return api.call(method, path, headers={"authorization": f"Bearer {token}"})


EMBED = {"input": "hello", "model": "embed"}
CHAT = {"messages": [{"role": "user", "content": "Say hello."}]}
DOC = {"documents": [{"id": "d1", "text": "hello"}]}

TRIGGERS: dict[tuple[str, str], dict[int, Trigger]] = {
    ("get", "/health"): {503: to("/health", model_store="@FILE@")},
    ("get", "/v1/models"): {401: no_token, 503: auth_unavailable},
    ("get", "/v1/models/{model_id}"): {401: no_token, 404: to("/v1/models/nope"), 503: auth_unavailable},
    ("post", "/v1/embeddings"): {
        400: body({**EMBED, "dimensions": 12}),
        401: no_token,
        404: body({**EMBED, "model": "nope"}),
        413: too_large,
        415: not_json,
        422: body({"model": "embed"}),
        503: body({**EMBED, "model": "cold-embed"}),
    },
    ("post", "/v1/models/{alias}/predict"): {
        400: body({"inputs": ["hi"]}, "/v1/models/broken/predict"),
        401: no_token,
        404: body({"inputs": ["hi"]}, "/v1/models/nope/predict"),
        413: too_large,
        415: not_json,
        422: body({}, "/v1/models/embed/predict"),
        503: body({"inputs": ["hi"]}, "/v1/models/cold-embed/predict"),
    },
    ("post", "/v1/chat/completions"): {
        400: body({**CHAT, "model": "broken", "n": 2}),
        401: no_token,
        404: body({**CHAT, "model": "nope"}),
        413: too_large,
        415: not_json,
        422: body({"model": "broken"}),
        502: body({**CHAT, "model": "broken"}),
        503: body({**CHAT, "model": "busy"}),
        504: body({**CHAT, "model": "hang"}),
    },
    ("post", "/v1/documents"): {
        400: body({"documents": [{"id": "a/b", "text": "hello"}]}),
        401: no_token,
        413: too_large,
        415: not_json,
        422: body({}),
        503: body(DOC),  # no HFLAMBDA_INDEX_QUEUE_URL
    },
    ("delete", "/v1/documents/{document_id}"): {
        400: delete_as_long_sub,
        401: no_token,
        413: too_large,
        415: not_json,
        422: to("/v1/documents/" + "x" * 513),
        503: to("/v1/documents/d1"),
    },
    ("post", "/v1/search"): {
        400: body({"query": "hello", "filter": {"lang": []}}),
        401: no_token,
        404: search_without_embedding_model,
        413: too_large,
        415: not_json,
        422: body({"query": ""}),
        502: body({"query": "hello"}, vector_uri="@FILE@"),
        503: body({"query": "hello"}, vector_backend="aws"),
    },
}


@pytest.fixture
def api(
    serve_env: Warmed,
    auth_env: DevIssuer,
    auth_settings: Callable[..., None],
    provider: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Api]:
    provider.script("acme/broken", Behaviour.fail(500, "boom"))
    provider.script("acme/busy", Behaviour.fail(429, "slow down", retry_after=30))
    provider.script("acme/hang", Behaviour.hang(3))
    registry = tmp_path / "models.toml"
    registry.write_text(serve_env.registry.read_text() + EXTRA_MODELS.replace("@PROVIDER@", provider.url))
    no_embeddings = tmp_path / "chat-only.toml"
    no_embeddings.write_text(NO_EMBEDDINGS.replace("@PROVIDER@", provider.url))
    (tmp_path / "not-a-folder").write_text("a file where the local vector store's folder should be")
    monkeypatch.setenv("HFLAMBDA_REGISTRY", str(registry))
    monkeypatch.setenv("HFLAMBDA_MAX_BODY_BYTES", str(MAX_BODY_BYTES))
    monkeypatch.setenv("HFLAMBDA_VECTOR_URI", str(tmp_path / "vectors"))
    monkeypatch.delenv("HFLAMBDA_INDEX_QUEUE_URL", raising=False)
    clear_caches()
    app = fresh_module("functions.predict.app").app
    token = {"authorization": f"Bearer {auth_env.token('alice', azp=APP_ORIGIN)}"}
    with TestClient(app) as client:
        yield Api(client, token, auth_settings, auth_env, no_embeddings, tmp_path)
    clear_caches()


def test_each_route_documents_exactly_the_errors_it_answers(api: Api) -> None:
    schema = app_schema(api.client.app)  # type: ignore[arg-type]
    assert set(TRIGGERS) == set(OPERATION_IDS)
    for (method, path), triggers in TRIGGERS.items():
        documented = sorted(
            int(s) for s in schema["paths"][path][method]["responses"] if not s.startswith("2")
        )
        assert documented == sorted(triggers), (
            f"{method.upper()} {path} documents {documented}; the test produces {sorted(triggers)}"
        )
        route = path.replace("{model_id}", "embed").replace("{alias}", "embed").replace("{document_id}", "d1")
        for status, trigger in triggers.items():
            response = trigger(api, method, route)
            assert response.status_code == status, (
                f"{method.upper()} {path}: {status} expected, got {response.status_code} {response.text}"
            )
            error = response.json()
            assert set(error) == {"error"} and error["error"]["type"] and error["error"]["message"], (
                response.text
            )

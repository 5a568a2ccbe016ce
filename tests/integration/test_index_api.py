"""``/v1/documents`` and ``/v1/search`` with real tokens, the real model, SQS on moto and the
local poller: end to end, user isolation whatever the body says, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.predict.schemas import MAX_DOCUMENTS_PER_REQUEST
from hflambda.auth.devissuer import DevIssuer
from hflambda.poller import Poller
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.aws import Queues, make_queues
from tests.fixtures.models import Warmed, clear_caches, fresh_module

pytestmark = pytest.mark.integration


@pytest.fixture
def queues(sqs: Any) -> Queues:
    return make_queues(sqs, visibility_timeout=2, max_receive_count=2)


@pytest.fixture
def api(
    serve_env: Warmed, auth_env: DevIssuer, queues: Queues, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, DevIssuer]]:
    monkeypatch.setenv("HFLAMBDA_VECTOR_URI", str(tmp_path / "vectors"))
    monkeypatch.setenv("HFLAMBDA_INDEX_QUEUE_URL", queues.queue_url)
    clear_caches()
    fresh_module("functions.index.handler")
    app = fresh_module("functions.predict.app").app
    with TestClient(app) as client:
        yield client, auth_env
    clear_caches()


def bearer(issuer: DevIssuer, sub: str) -> dict[str, str]:
    return {"authorization": f"Bearer {issuer.token(sub, azp=APP_ORIGIN)}"}


def drain(queues: Queues, sqs: Any) -> None:
    Poller(queues.queue_url, "functions.index.handler.handler", sqs_client=sqs).drain(timeout=60)


def test_documents_then_search_scoped_to_the_caller(
    api: tuple[TestClient, DevIssuer], queues: Queues, sqs: Any
) -> None:
    client, issuer = api
    alice, bob = bearer(issuer, "alice"), bearer(issuer, "bob")
    docs = [
        {"id": "cat", "text": "My cat sleeps on the windowsill every morning.", "metadata": {"kind": "pet"}},
        {
            "id": "tax",
            "text": "File the quarterly tax return before the deadline.",
            "metadata": {"kind": "admin"},
        },
    ]
    response = client.post("/v1/documents", json={"documents": docs}, headers=alice)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["queued"] == 2 and body["failed"] == 0
    assert {d["id"]: d["status"] for d in body["documents"]} == {"cat": "queued", "tax": "queued"}
    assert all(d["message_id"] for d in body["documents"])
    # bob tries to write into alice's space through the body: the field is refused
    sneaky = client.post(
        "/v1/documents", json={"documents": [{"id": "x", "text": "y"}], "user_id": "alice"}, headers=bob
    )
    assert sneaky.status_code == 202  # unknown top-level fields are ignored; the user is bob
    client.post(
        "/v1/documents", json={"documents": [{"id": "bobcat", "text": "A cat naps in the sun."}]}, headers=bob
    )
    drain(queues, sqs)

    found = client.post("/v1/search", json={"query": "kitty sleeping", "top_k": 5}, headers=alice)
    assert found.status_code == 200, found.text
    result = found.json()
    assert [d["id"] for d in result["data"]] == ["cat", "tax"]
    top = result["data"][0]
    assert (
        top["text"] == docs[0]["text"]
        and top["metadata"] == {"kind": "pet"}
        and (top["start"], top["end"]) == (0, len(docs[0]["text"]))
    )
    assert result["model"] == "embed" and result["revision"]
    assert [
        d["id"]
        for d in client.post(
            "/v1/search", json={"query": "cat", "filter": {"kind": "admin"}}, headers=alice
        ).json()["data"]
    ] == ["tax"]
    # a user id in the search body does not widen the scope
    bobs = client.post("/v1/search", json={"query": "kitty sleeping"}, headers=bob).json()["data"]
    assert {d["id"] for d in bobs} == {"bobcat", "x"}
    widened = client.post(
        "/v1/search", json={"query": "cat", "user_id": "alice", "filter": {"user_id": "alice"}}, headers=bob
    )
    assert widened.status_code == 200 and widened.json()["data"] == []
    assert {
        d["id"]
        for d in client.post("/v1/search", json={"query": "cat", "user_id": "alice"}, headers=bob).json()[
            "data"
        ]
    } == {"bobcat", "x"}

    deleted = client.delete("/v1/documents/cat", headers=alice)
    assert deleted.status_code == 202 and deleted.json()["documents"][0]["status"] == "queued"
    client.delete("/v1/documents/tax", headers=bob)  # bob cannot delete alice's document
    drain(queues, sqs)
    assert [
        d["id"] for d in client.post("/v1/search", json={"query": "kitty"}, headers=alice).json()["data"]
    ] == ["tax"]


def test_documents_errors(api: tuple[TestClient, DevIssuer]) -> None:
    client, issuer = api
    alice = bearer(issuer, "alice")
    too_many = {"documents": [{"id": f"d{i}", "text": "x"} for i in range(MAX_DOCUMENTS_PER_REQUEST + 1)]}
    response = client.post("/v1/documents", json=too_many, headers=alice)
    assert response.status_code == 413 and response.json()["error"]["param"] == "documents"
    huge = client.post(
        "/v1/documents", json={"documents": [{"id": "big", "text": "word " * 60_000}]}, headers=alice
    )
    assert huge.status_code == 413 and huge.json()["error"]["param"] == "documents[0]"
    # issue 13's abusive request: three 250,000-character documents
    abusive = {"documents": [{"id": f"a{i}", "text": "lorem ipsum " * 20_834} for i in range(3)]}
    refused = client.post("/v1/documents", json=abusive, headers=alice)
    assert refused.status_code == 413 and "HFLAMBDA_DOCUMENT_MAX_CHARS" in refused.json()["error"]["message"]
    tokens = client.post(
        "/v1/documents", json={"documents": [{"id": "t", "text": "a b " * 13_000}]}, headers=alice
    )
    assert tokens.status_code == 413 and "tokens" in tokens.json()["error"]["message"]
    meta = client.post(
        "/v1/documents",
        json={"documents": [{"id": "m", "text": "x", "metadata": {"k": "v" * 5000}}]},
        headers=alice,
    )
    assert meta.status_code == 413 and meta.json()["error"]["param"] == "documents[0]"
    for bad_id in ("a/b", "..", "."):
        slash = client.post(
            "/v1/documents",
            json={"documents": [{"id": "ok", "text": "x"}, {"id": bad_id, "text": "x"}]},
            headers=alice,
        )
        assert slash.status_code == 400 and slash.json()["error"]["param"] == "documents[1].id", bad_id
    # an id with '/' stored before the rule can still be erased: the rest of the path is the id
    legacy = client.delete("/v1/documents/folder/old%20note", headers=alice)
    assert legacy.status_code == 202 and legacy.json()["documents"][0]["id"] == "folder/old note"
    for flt in ({"kind": []}, {"kind": {"$gt": 1}}):
        answer = client.post("/v1/search", json={"query": "x", "filter": flt}, headers=alice)
        assert answer.status_code in (400, 422) and answer.status_code != 502, answer.text
    empty_list = client.post("/v1/search", json={"query": "x", "filter": {"kind": []}}, headers=alice)
    assert empty_list.status_code == 400 and empty_list.json()["error"]["param"] == "filter.kind"
    empty = client.post("/v1/documents", json={"documents": [{"id": "e", "text": "   "}]}, headers=alice)
    assert empty.status_code == 422
    assert client.post("/v1/documents", json={"documents": [{"id": "a", "text": "b"}]}).status_code == 401
    assert client.post("/v1/search", json={"query": "b"}).status_code == 401
    assert client.post("/v1/search", json={"query": "b", "top_k": 0}, headers=alice).status_code == 422
    assert (
        client.post("/v1/search", json={"query": "nothing indexed yet"}, headers=alice).json()["data"] == []
    )


def test_documents_without_a_queue_is_503(
    api: tuple[TestClient, DevIssuer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hflambda.settings import get_settings

    client, issuer = api
    monkeypatch.delenv("HFLAMBDA_INDEX_QUEUE_URL")
    get_settings.cache_clear()
    response = client.post(
        "/v1/documents", json={"documents": [{"id": "a", "text": "b"}]}, headers=bearer(issuer, "alice")
    )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "queue_not_configured" and "HFLAMBDA_INDEX_QUEUE_URL" in error["message"]

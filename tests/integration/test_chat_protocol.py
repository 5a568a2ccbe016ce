"""The chat API as OpenAI clients use it, in process: SSE streaming (uvicorn/TestClient and the
Lambda handler path), tool calls through a provider, OpenAI statuses, body handling, models,
named stages, scrubbed engine errors.

Local generation here is free text only (greedy); schema-guided and tool-call decoding on the
local model runs in the live server's child process (test_openai_clients.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DevIssuer
from tests.fakes.provider import Behaviour, FakeProvider
from tests.fixtures.auth import APP_ORIGIN, apigw_event
from tests.fixtures.models import fresh_module
from tests.integration.test_chat_api import HELLO, local, remote

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def make_client(chat_config: Callable[..., Path], auth_env: DevIssuer) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(models_toml: str, **settings: str) -> TestClient:
        chat_config(models_toml, **settings)
        app = fresh_module("functions.predict.app").app
        client = TestClient(
            app, headers={"authorization": f"Bearer {auth_env.token('alice', azp=APP_ORIGIN)}"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def events(text: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded ([DONE] kept as the string)."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def content_of(chunks: list[Any]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c, dict) and c.get("choices")
    )


# --- streaming -------------------------------------------------------------------------------


def test_stream_is_openai_sse_and_matches_the_whole_answer(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local())
    whole = client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": HELLO, "temperature": 0, "max_tokens": 12}
    ).json()
    request = {
        "model": "chat",
        "messages": HELLO,
        "temperature": 0,
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-hflambda-model"] == "chat"
        chunks = events(response.read().decode())
    assert chunks[-1] == "[DONE]"
    body = [c for c in chunks if isinstance(c, dict)]
    assert {c["object"] for c in body} == {"chat.completion.chunk"} and len({c["id"] for c in body}) == 1
    assert body[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_of(body) == whole["choices"][0]["message"]["content"]
    finish = [c for c in body if c["choices"] and c["choices"][0]["finish_reason"]]
    assert (
        len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    )
    assert [a["model"] for a in finish[0]["hflambda"]["attempts"]] == ["chat"]
    usage = body[-1]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    assert all(c["usage"] is None for c in body[:-1])


def test_stream_falls_back_before_the_first_piece_and_reports_attempts(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    client = make_client(remote("primary", "acme/gone", fallbacks=["chat"]) + local())
    response = client.post(
        "/v1/chat/completions",
        json={"model": "primary", "messages": HELLO, "temperature": 0, "max_tokens": 4, "stream": True},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-hflambda-attempts"] == "primary=not_found, chat=streaming"
    body = [c for c in events(response.text) if isinstance(c, dict)]
    assert {c["model"] for c in body} == {"chat"}
    trace = body[-1]["hflambda"]["attempts"]
    assert [(a["model"], a["ok"]) for a in trace] == [("primary", False), ("chat", True)]


def test_remote_free_text_streams_the_providers_deltas(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/words", Behaviour.answer("one two three four"))
    client = make_client(remote("words", "acme/words"))
    request = {"model": "words", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    body = [c for c in events(client.post("/v1/chat/completions", json=request).text) if isinstance(c, dict)]
    deltas = [
        c["choices"][0]["delta"]["content"]
        for c in body
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert deltas == ["one", " two", " three", " four"]
    assert body[-1]["usage"]["completion_tokens"] == 4
    (sent,) = provider.chat_requests("acme/words")
    assert (
        sent.body is not None
        and sent.body["stream"] is True
        and sent.body["stream_options"] == {"include_usage": True}
    )


def test_stream_that_no_model_answers_is_a_json_error_with_its_status(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/broken", Behaviour.fail(500, "boom"))
    client = make_client(remote("broken", "acme/broken"))
    response = client.post(
        "/v1/chat/completions", json={"model": "broken", "messages": HELLO, "stream": True}
    )
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "fallback_exhausted"


def test_streamed_json_is_validated_first_so_a_fallback_answers(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/sloppy", Behaviour.answer("not json"))
    provider.script("acme/careful", Behaviour.answer('{"ok": true}'))
    client = make_client(
        remote("sloppy", "acme/sloppy", fallbacks=["careful"]) + remote("careful", "acme/careful")
    )
    request = {
        "model": "sloppy",
        "messages": HELLO,
        "stream": True,
        "response_format": {"type": "json_object"},
    }
    body = [c for c in events(client.post("/v1/chat/completions", json=request).text) if isinstance(c, dict)]
    assert json.loads(content_of(body)) == {"ok": True}
    assert [(a["model"], a["ok"]) for a in body[-1]["hflambda"]["attempts"]] == [
        ("sloppy", False),
        ("careful", True),
    ]


def test_stream_through_the_lambda_handler_is_one_sse_response(
    make_client: Callable[..., TestClient],
) -> None:
    make_client(local())
    handler = fresh_module("functions.predict.handler").handler
    body = json.dumps({"model": "chat", "messages": HELLO, "temperature": 0, "max_tokens": 6, "stream": True})
    event = apigw_event("POST", "/v1/chat/completions", claims={"sub": "alice", "azp": APP_ORIGIN}, body=body)
    result = handler(event, _context())
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is False
    assert result["headers"]["content-type"].startswith("text/event-stream")
    chunks = events(result["body"])
    assert chunks[-1] == "[DONE]" and chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


# --- tools (through a provider; local tool decoding runs in the live-server tests) ------------


def test_tool_calls_pass_through_a_provider_and_come_back_as_tool_calls(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/tools", Behaviour.call(("get_weather", '{"city": "Oslo"}')))
    client = make_client(remote("tools", "acme/tools"))
    choice = {"type": "function", "function": {"name": "get_weather"}}
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "tools",
            "messages": HELLO,
            "tools": [WEATHER],
            "tool_choice": choice,
            "parallel_tool_calls": False,
        },
    )
    assert response.status_code == 200, response.text
    (answer,) = response.json()["choices"]
    assert answer["finish_reason"] == "tool_calls" and answer["message"]["content"] is None
    (call,) = answer["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    }
    (sent,) = provider.chat_requests("acme/tools")
    assert sent.body is not None
    assert (
        sent.body["tools"][0]["function"]["name"] == "get_weather"
        and sent.body["tool_choice"] == choice
        and sent.body["parallel_tool_calls"] is False
    )


def test_tool_arguments_off_schema_fall_back(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/sloppy", Behaviour.call(("get_weather", '{"city": "Rome"}')))
    provider.script("acme/careful", Behaviour.call(("get_weather", '{"city": "Paris"}')))
    client = make_client(
        remote("sloppy", "acme/sloppy", fallbacks=["careful"]) + remote("careful", "acme/careful")
    )
    request = {
        "model": "sloppy",
        "messages": HELLO,
        "tools": [WEATHER],
        "tool_choice": "required",
        "stream": True,
    }
    body = [c for c in events(client.post("/v1/chat/completions", json=request).text) if isinstance(c, dict)]
    (calls,) = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in body
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert calls[0]["index"] == 0 and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert body[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "do not match its schema" in body[-1]["hflambda"]["attempts"][0]["reason"]


# --- statuses like OpenAI's --------------------------------------------------------------------


def test_prompt_over_every_context_is_400_context_length_exceeded(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(local(context_tokens=64, max_output_tokens=16))
    response = client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "word " * 200}]},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == error["type"] == "context_length_exceeded" and error["param"] == "messages"
    assert "context is 64 tokens" in error["message"]


def test_json_cut_by_max_tokens_is_200_length_with_the_text_so_far(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/cut", Behaviour.answer('{"ok": tr', finish_reason="length"))
    client = make_client(remote("cut", "acme/cut"))
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "v", "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    response = client.post(
        "/v1/chat/completions",
        json={"model": "cut", "messages": HELLO, "max_tokens": 3, "response_format": fmt},
    )
    assert response.status_code == 200, response.text
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == '{"ok": tr'


def test_engine_internals_never_reach_the_client(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hflambda.generation.local import LocalChatEngine

    def explode(self: object, request: object, *, timeout: float) -> Iterator[str]:
        raise RuntimeError("llguidance parser state: lexer stack [0x7f...] grammar #3 ...")
        yield ""  # pragma: no cover

    monkeypatch.setattr(LocalChatEngine, "stream", explode)
    client = make_client(local())
    for stream in (False, True):
        response = client.post(
            "/v1/chat/completions", json={"model": "chat", "messages": HELLO, "stream": stream}
        )
        assert response.status_code == 502, response.text
        assert "parser state" not in response.text and "0x7f" not in response.text
        assert "details are in the server log" in response.json()["error"]["message"]
    huge_seed = client.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO, "seed": 2**70})
    assert huge_seed.status_code == 422 and "pybind" not in huge_seed.text


# --- bodies, models, stages -----------------------------------------------------------------


def test_json_is_json_whatever_the_content_type(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local())
    body = json.dumps({"model": "chat", "messages": HELLO, "temperature": 0, "max_tokens": 2})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        response = client.post("/v1/chat/completions", content=body, headers=headers)
        assert response.status_code == 200, (content_type, response.text)
    refused = client.post(
        "/v1/chat/completions",
        content=b"model=chat&messages=hi",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 415 and refused.json()["error"]["type"] == "unsupported_media_type"


def test_body_limit_counts_received_bytes_chunked_or_not(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local(), max_body_bytes="4096")

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}]}'

    chunked = client.post("/v1/chat/completions", content=chunks())
    assert chunked.status_code == 413, chunked.text
    assert "over 4096 bytes" in chunked.json()["error"]["message"]
    declared = client.post(
        "/v1/chat/completions",
        content=b"{" + b" " * 5000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == 413


def test_models_retrieve_and_created(make_client: Callable[..., TestClient], provider: FakeProvider) -> None:
    client = make_client(local() + remote("far", "acme/far"))
    one = client.get("/v1/models/chat")
    assert one.status_code == 200 and one.json()["id"] == "chat" and one.json()["object"] == "model"
    assert one.json()["created"] > 1_700_000_000
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["chat"]["created"] == one.json()["created"] and listed["far"]["created"] == 0
    missing = client.get("/v1/models/embed")
    assert (
        missing.status_code == 404
        and missing.json()["error"]["type"] == "model_not_found"
        and "chat" in missing.json()["error"]["message"]
    )


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_routes_work_behind_a_named_stage(make_client: Callable[..., TestClient]) -> None:
    make_client(local())
    handler = fresh_module("functions.predict.handler").handler
    event = apigw_event("GET", "/prod/v1/models/chat", claims={"sub": "alice", "azp": APP_ORIGIN})
    event["requestContext"]["stage"] = "prod"
    result = handler(event, _context())
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["id"] == "chat"
    health = apigw_event("GET", "/prod/health")
    health["requestContext"]["stage"] = "prod"
    assert handler(health, _context())["statusCode"] == 200


def test_named_stage_prefix_is_stripped() -> None:
    without_stage = fresh_module("functions.predict.handler").without_stage

    event = {
        "rawPath": "/prod/v1/models",
        "requestContext": {"stage": "prod", "http": {"path": "/prod/v1/models"}},
    }
    stripped = without_stage(event)
    assert stripped["rawPath"] == stripped["requestContext"]["http"]["path"] == "/v1/models"
    default = {
        "rawPath": "/v1/models",
        "requestContext": {"stage": "$default", "http": {"path": "/v1/models"}},
    }
    assert without_stage(default) is default
    other = {
        "rawPath": "/production/x",
        "requestContext": {"stage": "prod", "http": {"path": "/production/x"}},
    }
    assert without_stage(other)["rawPath"] == "/production/x"


def _context() -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(
        function_name="predict",
        function_version="$LATEST",
        memory_limit_in_mb=3008,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:predict",
        aws_request_id="c0ffee00-0000-4000-8000-000000000001",
        get_remaining_time_in_millis=lambda: 30_000,
    )

"""``POST /v1/chat/completions`` in process, with real tokens: OpenAI shape, every fallback trigger, exhausted chains.

Local attempts here generate free text only (greedy, a few tokens); schema-guided local
generation runs in child processes (tests/integration/test_genai_engine.py and the openai
client test), since a GenAI abort must not take pytest down.
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
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.genai import LOCAL_CHAT_TOML
from tests.fixtures.models import fresh_module

pytestmark = pytest.mark.integration

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "label": {"enum": ["yes", "no"]}},
    "required": ["ok", "label"],
    "additionalProperties": False,
}
HELLO = [{"role": "user", "content": "Say hello."}]


def remote(
    alias: str, provider_model: str, *, fallbacks: list[str] | None = None, timeout: float = 5.0
) -> str:
    """A remote registry entry on the fake provider."""
    return f"""
[models.{alias}]
repo = "{provider_model}"
task = "text-generation"
engine = "remote"
base_url = "@PROVIDER@"
provider_model = "{provider_model}"
timeout_seconds = {timeout}
fallbacks = {json.dumps(fallbacks or [])}
"""


def local(
    alias: str = "chat",
    *,
    fallbacks: list[str] | None = None,
    context_tokens: int = 1024,
    max_output_tokens: int = 128,
) -> str:
    """The warmed tiny Qwen2 under ``alias`` (only ``chat`` is in the store)."""
    text = LOCAL_CHAT_TOML.replace("[models.chat]", f"[models.{alias}]")
    text = text.replace("context_tokens = 1024", f"context_tokens = {context_tokens}").replace(
        "max_output_tokens = 128", f"max_output_tokens = {max_output_tokens}"
    )
    return text + f"fallbacks = {json.dumps(fallbacks or [])}\n"


@pytest.fixture
def make_client(chat_config: Callable[..., Path], auth_env: DevIssuer) -> Iterator[Callable[..., TestClient]]:
    """``make_client(models_toml, **settings)``: the predict app over that registry, with a valid token."""
    clients: list[TestClient] = []

    def make(models_toml: str, **settings: str) -> TestClient:
        chat_config(models_toml, **settings)
        app = fresh_module("functions.predict.app").app
        token = auth_env.token("alice", azp=APP_ORIGIN)
        client = TestClient(app, headers={"authorization": f"Bearer {token}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def chat(client: TestClient, model: str, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HELLO, **extra})


def attempts_of(body: dict[str, Any]) -> list[tuple[str, bool, str | None]]:
    return [
        (a["model"], a["ok"], (a["reason"] or "").split(":")[0] or None) for a in body["hflambda"]["attempts"]
    ]


# --- the OpenAI shape ------------------------------------------------------------------------


def test_local_completion_has_openai_shape_and_usage(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local())
    response = chat(client, "chat", temperature=0, max_tokens=6)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "chat"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= 6
    assert usage["prompt_tokens"] > 5  # the chat template's system turn + the question
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == 6
    assert attempts_of(body) == [("chat", True, None)]
    assert body["hflambda"]["engine"].startswith("onnxruntime-genai 0.15.2 int4")
    assert response.headers["x-hflambda-model"] == "chat"
    # greedy is deterministic; the same request gives the same answer and counts
    again = chat(client, "chat", temperature=0, max_tokens=6).json()
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]
    assert again["usage"] == usage


def test_prompt_tokens_follow_the_conversation(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local())
    short = chat(client, "chat", temperature=0, max_tokens=1).json()["usage"]["prompt_tokens"]
    longer = client.post(
        "/v1/chat/completions",
        json={
            "model": "chat",
            "temperature": 0,
            "max_tokens": 1,
            "messages": [
                {"role": "system", "content": "Be brief."},
                *HELLO,
                {"role": "assistant", "content": "Hello."},
                *HELLO,
            ],
        },
    ).json()["usage"]["prompt_tokens"]
    assert longer > short


def test_remote_completion_passes_the_request_through(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/chat-1", Behaviour.answer("Hello there."))
    client = make_client(remote("chat-remote", "acme/chat-1"))
    response = chat(client, "chat-remote", temperature=0.2, top_p=0.9, max_tokens=7, stop=["\n\n"], seed=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "chat-remote"
    assert body["choices"][0]["message"]["content"] == "Hello there."
    assert (
        body["usage"]["completion_tokens"] == 2
        and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 2
    )
    (sent,) = provider.chat_requests("acme/chat-1")
    assert sent.body is not None
    assert sent.body["messages"] == HELLO
    assert {k: sent.body[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed", "stream")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 7,
        "stop": ["\n\n"],
        "seed": 3,
        "stream": False,
    }


def test_remote_json_schema_is_asked_for_and_validated(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/json", Behaviour.answer('{"ok": true, "label": "yes"}'))
    client = make_client(remote("chat-remote", "acme/json"))
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}
    response = chat(client, "chat-remote", response_format=fmt)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"ok": True, "label": "yes"}
    (sent,) = provider.chat_requests("acme/json")
    assert sent.body is not None and sent.body["response_format"] == fmt


# --- request errors (4xx, no chain) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"best_of": 3}, "best_of"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
        ),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
                }
            },
            "response_format.json_schema.schema",
        ),
    ],
)
def test_unsupported_requests_are_clear_400s(
    make_client: Callable[..., TestClient], extra: dict[str, Any], param: str
) -> None:
    client = make_client(local())
    response = client.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO, **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert param.split(".")[0].split("[")[0] in response.json()["error"]["message"]


def test_unknown_model_is_404_listing_generation_models(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local())
    response = chat(client, "gpt-4o")
    assert response.status_code == 404
    assert "chat" in response.json()["error"]["message"]


def test_chat_needs_a_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client(local())
    response = client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": HELLO}, headers={"authorization": ""}
    )
    assert response.status_code == 401


# --- each fallback trigger -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "trigger"),
    [
        (Behaviour.fail(404, "The model `acme/gone` does not exist."), "not_found"),
        (Behaviour.fail(429, "Too many requests", retry_after=7), "rate_limited"),
        (Behaviour.fail(500, "internal error"), "upstream_error"),
        (Behaviour.fail(503, "overloaded"), "unavailable"),
        (Behaviour.garbage(), "upstream_error"),
        (Behaviour.context_too_long(), "context_too_long"),
    ],
    ids=["404", "429", "500", "503", "unreadable-body", "context-400"],
)
def test_provider_failures_fall_back(
    make_client: Callable[..., TestClient], provider: FakeProvider, behaviour: Behaviour, trigger: str
) -> None:
    provider.script("acme/first", behaviour)
    provider.script("acme/second", Behaviour.answer("second answers"))
    client = make_client(
        remote("first", "acme/first", fallbacks=["second"]) + remote("second", "acme/second")
    )
    response = chat(client, "first")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "second"
    assert body["choices"][0]["message"]["content"] == "second answers"
    assert attempts_of(body) == [("first", False, trigger), ("second", True, None)]
    assert response.headers["x-hflambda-attempts"] == f"first={trigger}, second=ok"


def test_provider_timeout_falls_back(make_client: Callable[..., TestClient], provider: FakeProvider) -> None:
    provider.script("acme/slow", Behaviour.hang(20))
    provider.script("acme/fast", Behaviour.answer("fast"))
    client = make_client(
        remote("slow", "acme/slow", fallbacks=["fast"], timeout=1.0) + remote("fast", "acme/fast")
    )
    response = chat(client, "slow")
    assert response.status_code == 200, response.text
    body = response.json()
    assert attempts_of(body) == [("slow", False, "timeout"), ("fast", True, None)]
    assert 0.9 <= body["hflambda"]["attempts"][0]["seconds"] < 5


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        ("Sure! Here is your JSON: {ok: yes}", {"type": "json_object"}),
        ('["not", "an", "object"]', {"type": "json_object"}),
        (
            '{"ok": "maybe", "label": "yes"}',
            {"type": "json_schema", "json_schema": {"name": "v", "schema": SCHEMA}},
        ),
    ],
    ids=["not-json", "json-not-object", "schema-mismatch"],
)
def test_invalid_json_answers_fall_back(
    make_client: Callable[..., TestClient], provider: FakeProvider, content: str, fmt: dict[str, Any]
) -> None:
    provider.script("acme/sloppy", Behaviour.answer(content))
    provider.script("acme/careful", Behaviour.answer('{"ok": false, "label": "no"}'))
    client = make_client(
        remote("sloppy", "acme/sloppy", fallbacks=["careful"]) + remote("careful", "acme/careful")
    )
    response = chat(client, "sloppy", response_format=fmt)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "careful"
    assert attempts_of(body) == [("sloppy", False, "invalid_output"), ("careful", True, None)]
    assert json.loads(body["choices"][0]["message"]["content"]) == {"ok": False, "label": "no"}


def test_local_model_not_warmed_falls_back(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/backup", Behaviour.answer("backup"))
    client = make_client(local("chat-cold", fallbacks=["backup"]) + remote("backup", "acme/backup"))
    response = chat(client, "chat-cold")
    assert response.status_code == 200, response.text
    body = response.json()
    assert attempts_of(body) == [("chat-cold", False, "not_ready"), ("backup", True, None)]
    assert "not warmed" in body["hflambda"]["attempts"][0]["reason"]


def test_local_context_too_long_falls_back(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/long-context", Behaviour.answer("plenty of room"))
    client = make_client(
        local(context_tokens=64, max_output_tokens=16, fallbacks=["big"]) + remote("big", "acme/long-context")
    )
    long_prompt = [{"role": "user", "content": "word " * 200}]
    response = client.post("/v1/chat/completions", json={"model": "chat", "messages": long_prompt})
    assert response.status_code == 200, response.text
    body = response.json()
    assert attempts_of(body) == [("chat", False, "context_too_long"), ("big", True, None)]
    assert "context is 64 tokens" in body["hflambda"]["attempts"][0]["reason"]


def test_remote_failure_falls_back_to_the_local_model(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    client = make_client(remote("primary", "acme/unknown", fallbacks=["chat"]) + local())
    response = chat(client, "primary", temperature=0, max_tokens=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "chat"
    assert attempts_of(body) == [("primary", False, "not_found"), ("chat", True, None)]
    assert body["usage"]["completion_tokens"] <= 3


# --- exhausted chains ------------------------------------------------------------------------


def test_exhausted_chain_lists_every_attempt(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/a", Behaviour.fail(500, "boom"))
    provider.script("acme/b", Behaviour.answer("no json here"))
    toml = remote("a", "acme/a", fallbacks=["b", "cold"]) + remote("b", "acme/b") + local("cold")
    client = make_client(toml)
    response = chat(client, "a", response_format={"type": "json_object"})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "fallback_exhausted"
    lines = error["message"].splitlines()
    assert lines[0] == "No model in the chain could answer:"
    assert [line.split(":")[0] for line in lines[1:]] == ["- a", "- b", "- cold"]
    assert "upstream_error" in lines[1] and "boom" in lines[1]
    assert "invalid_output" in lines[2]
    assert "not_ready" in lines[3]
    assert [a["model"] for a in error["details"]["attempts"]] == ["a", "b", "cold"]


def test_exhausted_by_temporary_failures_is_503(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/busy", Behaviour.fail(429, "slow down", retry_after=30))
    client = make_client(remote("busy", "acme/busy", fallbacks=["cold"]) + local("cold"))
    response = chat(client, "busy")
    assert response.status_code == 503, response.text
    assert [a["model"] for a in response.json()["error"]["details"]["attempts"]] == ["busy", "cold"]


def test_exhausted_by_the_time_budget_is_504(
    make_client: Callable[..., TestClient], provider: FakeProvider
) -> None:
    provider.script("acme/hang", Behaviour.hang(20))
    provider.script("acme/never", Behaviour.answer("too late"))
    client = make_client(
        remote("hang", "acme/hang", fallbacks=["never"], timeout=10) + remote("never", "acme/never"),
        chat_budget_seconds="1.5",
    )
    response = chat(client, "hang")
    assert response.status_code == 504, response.text
    message = response.json()["error"]["message"]
    assert "- hang: timeout:" in message
    assert "- never: skipped: not tried: 1.5 s request budget spent" in message
    assert provider.chat_requests("acme/never") == []

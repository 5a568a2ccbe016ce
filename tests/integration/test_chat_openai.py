"""The official openai client against a real local server's /v1/chat/completions (uvicorn on 127.0.0.1).

The server runs in a child process, so schema-guided GenAI generation there cannot take
pytest down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from tests.fakes.provider import Behaviour, FakeProvider
from tests.fixtures.genai import LOCAL_CHAT_TOML, GenaiWarmed
from tests.fixtures.server import live_predict

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "label": {"enum": ["yes", "no"]},
        "note": {"type": "string", "maxLength": 8},
    },
    "required": ["ok", "label", "note"],
    "additionalProperties": False,
}
MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "Answer in JSON."},
    {"role": "user", "content": "Is Paris the capital of France?"},
]


class Verdict(BaseModel):
    valid: bool
    level: Literal["low", "high"]
    note: str = Field(max_length=8)


def registry_text(provider_url: str) -> str:
    remote = """
[models.{alias}]
repo = "{model}"
task = "text-generation"
engine = "remote"
base_url = "{url}"
provider_model = "{model}"
timeout_seconds = 5
fallbacks = {fallbacks}
"""
    return (
        remote.format(alias="dead", model="acme/retired", url=provider_url, fallbacks='["chat"]')
        + remote.format(alias="broken", model="acme/broken", url=provider_url, fallbacks='["busy"]')
        + remote.format(alias="busy", model="acme/busy", url=provider_url, fallbacks="[]")
        + LOCAL_CHAT_TOML
    )


@pytest.fixture
def client(
    genai_warmed: GenaiWarmed, provider: FakeProvider, dev_issuer: DevIssuer, tmp_path: Path
) -> Iterator[openai.OpenAI]:
    provider.script("acme/broken", Behaviour.fail(500, "upstream exploded"))
    provider.script("acme/busy", Behaviour.fail(429, "slow down", retry_after=3))
    registry = tmp_path / "models.toml"
    registry.write_text(registry_text(provider.url).replace("@SOURCE@", str(genai_warmed.source_dir)))
    env = {
        "HFLAMBDA_MODEL_STORE": str(genai_warmed.store),
        "HFLAMBDA_REGISTRY": str(registry),
        "HFLAMBDA_PROFILE": "",
        "HFLAMBDA_AUTH_ISSUER": str(dev_issuer.issuer),
        "HFLAMBDA_AUTH_AUDIENCE": DEV_AUDIENCE,
    }
    with live_predict(env, log=tmp_path / "api.log") as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=dev_issuer.token("alice"), max_retries=0)


def test_openai_client_chat_completion_and_json_schema(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="chat", messages=MESSAGES, temperature=0, max_tokens=8)  # type: ignore[arg-type]
    assert completion.model == "chat"
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert isinstance(completion.choices[0].message.content, str)
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 8
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    structured = client.chat.completions.create(  # type: ignore[call-overload]
        model="chat",
        messages=MESSAGES,
        temperature=0,
        max_tokens=96,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
        },
    )
    content = structured.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), SCHEMA)
    assert structured.choices[0].finish_reason == "stop"

    # the client's own structured-output helper: a pydantic model becomes a strict json_schema
    parsed = client.chat.completions.parse(
        model="chat", messages=MESSAGES, temperature=0.7, seed=1, max_tokens=96, response_format=Verdict
    )  # type: ignore[arg-type]
    verdict = parsed.choices[0].message.parsed
    assert isinstance(verdict, Verdict) and len(verdict.note) <= 8


def test_openai_client_sees_which_model_answered(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="dead", messages=MESSAGES, temperature=0, max_tokens=4
    )  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.model == "chat"  # acme/retired is unknown at the provider: the local fallback answered
    assert raw.headers["x-hflambda-model"] == "chat"
    assert raw.headers["x-hflambda-attempts"] == "dead=not_found, chat=ok"
    trace = completion.model_extra["hflambda"] if completion.model_extra else {}
    assert [a["model"] for a in trace["attempts"]] == ["dead", "chat"]


def test_openai_client_gets_the_exhausted_chain_listing(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="broken", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    message = caught.value.message
    assert "- broken: upstream_error:" in message and "upstream exploded" in message
    assert "- busy: rate_limited:" in message and "retry after 3 s" in message
    # streaming: an exhausted chain is still an error with its status, before any event
    with pytest.raises(openai.APIStatusError) as streamed:
        client.chat.completions.create(model="broken", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert streamed.value.status_code == 502 and "- busy: rate_limited:" in streamed.value.message


def test_openai_client_streams_from_the_fallback(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="dead", messages=MESSAGES, temperature=0, max_tokens=6, stream=True
        )
    )  # type: ignore[arg-type]
    assert {c.model for c in chunks} == {"chat"}
    trace = chunks[-1].model_extra["hflambda"] if chunks[-1].model_extra else {}
    assert [(a["model"], a["ok"]) for a in trace["attempts"]] == [("dead", False), ("chat", True)]

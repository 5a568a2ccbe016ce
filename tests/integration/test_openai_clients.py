"""The clients people use — openai, langchain-openai, llama-index — against a real local predict
server (uvicorn on 127.0.0.1, one per module): embeddings with defaults and options, chat
plain / streaming / json_schema / parse / tools, the error classes with the server's message,
and no retried request for a client error.

The server runs in a child process, so schema-guided GenAI decoding there cannot take pytest
down. The chat model is the session's tiny random Qwen2: answers are meaningless, so tests
assert on protocol and schema validity, with bounded schemas (enums, booleans) so random
weights terminate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jsonschema
import numpy as np
import openai
import pytest
from pydantic import BaseModel, Field

from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from tests.fakes.provider import FakeProvider
from tests.fixtures.genai import LOCAL_CHAT_TOML, GenaiWarmed
from tests.fixtures.models import Warmed
from tests.fixtures.server import live_predict

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Is Paris the capital of France?"},
]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Oslo"]}, "metric": {"type": "boolean"}},
    "required": ["city", "metric"],
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER_PARAMS},
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"enum": ["UTC", "CET"]}},
                "required": ["zone"],
                "additionalProperties": False,
            },
        },
    },
]


class Verdict(BaseModel):
    """A verdict on the question."""

    valid: bool
    level: Literal["low", "high"]
    note: str = Field(max_length=8)


class GetWeather(BaseModel):
    """Weather in a city."""

    city: Literal["Paris", "Oslo"]
    metric: bool


@dataclass
class Server:
    url: str
    token: str
    sent: list[httpx.Request] = field(default_factory=list)

    def openai(self, *, api_key: str | None = None, max_retries: int = 2) -> openai.OpenAI:
        """An openai client with its default retries; every request it sends is recorded."""
        http = httpx.Client(event_hooks={"request": [self.sent.append]})
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=api_key or self.token,
            max_retries=max_retries,
            http_client=http,
        )


@pytest.fixture(scope="module")
def server(
    warmed: Warmed,
    genai_warmed: GenaiWarmed,
    fake_provider_server: FakeProvider,
    dev_issuer: DevIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """embed / embed-int8 from the warmed store and the tiny chat model, in one store of links."""
    root = tmp_path_factory.mktemp("clients")
    store = root / "store"
    store.mkdir()
    for alias in ("embed", "embed-int8"):
        (store / alias).symlink_to(warmed.store / alias)
    (store / "chat").symlink_to(genai_warmed.store / "chat")
    registry = root / "models.toml"
    text = warmed.registry.read_text()
    embed_tables = text[text.index("[models.embed]") : text.index("[models.classify]")]
    # room for tool calls: the tiny tokenizer spends about a token per character of JSON
    chat_table = LOCAL_CHAT_TOML.replace("@SOURCE@", str(genai_warmed.source_dir)).replace(
        "max_output_tokens = 128", "max_output_tokens = 512"
    )
    registry.write_text(embed_tables + chat_table)
    env = {
        "HFLAMBDA_MODEL_STORE": str(store),
        "HFLAMBDA_REGISTRY": str(registry),
        "HFLAMBDA_PROFILE": "",
        "HFLAMBDA_AUTH_ISSUER": str(dev_issuer.issuer),
        "HFLAMBDA_AUTH_AUDIENCE": DEV_AUDIENCE,
    }
    with live_predict(env, log=root / "api.log") as url:
        yield Server(url=url, token=dev_issuer.token("alice"))


# --- embeddings ------------------------------------------------------------------------------


def test_openai_embeddings_defaults_and_options(server: Server) -> None:
    client = server.openai()
    default = client.embeddings.create(model="embed", input=["hello", "hola"])  # the SDK asks for base64
    floats = client.embeddings.create(
        model="embed", input=["hello", "hola"], encoding_format="float", dimensions=384
    )
    a, b = (np.array([d.embedding for d in r.data]) for r in (default, floats))
    assert a.shape == b.shape == (2, 384) and np.allclose(a, b, atol=1e-6)
    assert default.usage.prompt_tokens > 0 and default.model == "embed"
    batch = client.embeddings.create(model="embed", input=[f"text {i}" for i in range(2048)])
    assert len(batch.data) == 2048 and [d.index for d in batch.data[:3]] == [0, 1, 2]
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        client.embeddings.create(model="embed", input=[[9906, 1917]])
    with pytest.raises(openai.BadRequestError, match="produces 384"):
        client.embeddings.create(model="embed", input="x", dimensions=12)


def test_langchain_embeddings(server: Server) -> None:
    from langchain_openai import OpenAIEmbeddings

    # LangChain's default sends tiktoken ids (a 400 that says so); the documented switch sends text
    embeddings = OpenAIEmbeddings(
        model="embed", base_url=f"{server.url}/v1", api_key=server.token, check_embedding_ctx_length=False
    )  # type: ignore[arg-type]
    docs = embeddings.embed_documents([f"document {i}" for i in range(1000)])  # its default chunk of 1,000
    query = embeddings.embed_query("document 3")
    assert len(docs) == 1000 and len(query) == 384
    assert np.allclose(query, docs[3], atol=1e-5)


def test_llama_index_embeddings(server: Server) -> None:
    from llama_index.embeddings.openai import OpenAIEmbedding

    model = OpenAIEmbedding(model_name="embed", api_base=f"{server.url}/v1", api_key=server.token)
    one = model.get_text_embedding("hello")
    many = model.get_text_embedding_batch(["hello", "hola"])
    assert len(one) == 384 and np.allclose(one, many[0], atol=1e-5)
    assert len(model.get_query_embedding("hello")) == 384


# --- chat with openai ------------------------------------------------------------------------


def test_openai_chat_plain_json_schema_and_parse(server: Server) -> None:
    client = server.openai()
    plain = client.chat.completions.create(model="chat", messages=MESSAGES, temperature=0, max_tokens=8)  # type: ignore[arg-type]
    assert (
        plain.object == "chat.completion"
        and plain.model == "chat"
        and isinstance(plain.choices[0].message.content, str)
    )
    schema = {**Verdict.model_json_schema(), "additionalProperties": False}
    structured = client.chat.completions.create(  # type: ignore[call-overload]
        model="chat",
        messages=MESSAGES,
        temperature=0,
        max_tokens=96,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": schema, "strict": True},
        },
    )
    assert structured.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(structured.choices[0].message.content), schema)
    parsed = client.chat.completions.parse(
        model="chat", messages=MESSAGES, temperature=0.7, seed=1, max_tokens=96, response_format=Verdict
    )  # type: ignore[arg-type]
    assert isinstance(parsed.choices[0].message.parsed, Verdict)


def test_openai_streaming_is_incremental(server: Server) -> None:
    client = server.openai()
    started = time.monotonic()
    arrivals: list[float] = []
    pieces: list[str] = []
    usage = None
    stream = client.chat.completions.create(  # type: ignore[call-overload]
        model="chat",
        messages=[{"role": "user", "content": "Tell a long story."}],
        temperature=0,
        max_tokens=120,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            pieces.append(chunk.choices[0].delta.content)
    whole = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Tell a long story."}],
        temperature=0,
        max_tokens=120,
    )  # type: ignore[arg-type]
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert usage.completion_tokens >= 20, "the prompt must make the tiny model write a while"
    # tokens arrive as they are generated: the first one well before the last
    assert len(arrivals) >= 10 and arrivals[-1] - arrivals[0] > 0.01, arrivals


def test_openai_tool_calls(server: Server) -> None:
    client = server.openai()
    named = client.chat.completions.create(  # type: ignore[call-overload]
        model="chat",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=256,
    )
    choice = named.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)
    required = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice="required",
        temperature=0.8,
        seed=3,
        max_tokens=480,
    )  # type: ignore[call-overload]
    assert (
        required.choices[0].finish_reason == "tool_calls"
        and 1 <= len(required.choices[0].message.tool_calls) <= 4
    )
    assert {c.function.name for c in required.choices[0].message.tool_calls} <= {"get_weather", "get_time"}
    auto = client.chat.completions.create(
        model="chat", messages=MESSAGES, tools=TOOLS, temperature=0, max_tokens=256
    )  # type: ignore[call-overload]
    assert auto.choices[0].finish_reason in ("tool_calls", "stop", "length")
    none = client.chat.completions.create(
        model="chat", messages=MESSAGES, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=4
    )  # type: ignore[call-overload]
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason in ("stop", "length")
    # a streamed tool call accumulates the way the SDK expects
    streamed = client.chat.completions.create(  # type: ignore[call-overload]
        model="chat",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        stream=True,
        temperature=0,
        max_tokens=256,
    )
    deltas = [c.choices[0] for c in streamed if c.choices]
    calls = [tc for d in deltas for tc in (d.delta.tool_calls or [])]
    assert (
        len(calls) == 1 and calls[0].function.name == "get_time" and deltas[-1].finish_reason == "tool_calls"
    )
    assert json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET")


def test_openai_error_classes_carry_the_message_and_are_not_retried(server: Server) -> None:
    client = server.openai()  # default max_retries=2: a retryable status would be sent three times
    server.sent.clear()
    with pytest.raises(openai.BadRequestError, match="logprobs") as bad:
        client.chat.completions.create(model="chat", messages=MESSAGES, logprobs=True)  # type: ignore[arg-type]
    assert bad.value.code == "bad_request" and bad.value.param == "logprobs"
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "word " * 1500}])  # type: ignore[arg-type]
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError, match="Known: "):
        client.models.retrieve("text-embedding-3-small")
    with pytest.raises(openai.NotFoundError, match="chat"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError, match="Invalid bearer token"):
        server.openai(api_key="not-a-jwt").models.list()
    assert len(server.sent) == 5, [str(r.url) for r in server.sent]  # one request per call: no retries
    model = client.models.retrieve("embed")
    assert model.id == "embed" and model.created > 0


# --- chat with LangChain ---------------------------------------------------------------------


def test_langchain_chat_invoke_stream_tools_and_structured_output(server: Server) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="chat", base_url=f"{server.url}/v1", api_key=server.token, temperature=0, max_tokens=24
    )  # type: ignore[arg-type]
    answer = llm.invoke("Is Paris the capital of France?")
    assert isinstance(answer.content, str) and answer.response_metadata["model_name"] == "chat"
    chunks = list(llm.stream("Tell a long story."))
    assert len(chunks) > 3 and "".join(str(c.content) for c in chunks)
    llm = ChatOpenAI(
        model="chat", base_url=f"{server.url}/v1", api_key=server.token, temperature=0, max_tokens=256
    )  # type: ignore[arg-type]
    bound = llm.bind_tools([GetWeather], tool_choice="GetWeather")
    called = bound.invoke("Weather in Oslo?")
    (call,) = called.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "GetWeather" and GetWeather.model_validate(call["args"])
    structured = llm.with_structured_output(GetWeather, method="function_calling")
    result = structured.invoke("Weather in Paris, metric?")
    assert isinstance(result, GetWeather)
    via_schema = llm.with_structured_output(Verdict, method="json_schema").invoke(
        "Is Paris the capital of France?"
    )
    assert isinstance(via_schema, Verdict)

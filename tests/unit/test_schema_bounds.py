"""Schema bounds before the guided decoder, and the tool-call grammar."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hflambda.errors import BadInput
from hflambda.generation import ChatMessage, ChatRequest, Tool, ToolCall
from hflambda.generation.bounds import SchemaLimits, check_schema_bounds
from hflambda.generation.exceptions import AttemptFailed
from hflambda.generation.tools import check_tool_calls, parse_tool_answer, template_messages, tool_schema

W = "response_format.json_schema.schema"


@pytest.mark.parametrize(
    ("schema", "keyword", "path"),
    [
        ({"type": "array", "minItems": 10**9, "items": {"type": "integer"}}, "minItems", "/"),
        (
            {"type": "object", "properties": {"xs": {"type": "array", "maxItems": 10**7}}},
            "maxItems",
            "/properties/xs",
        ),
        (
            {"type": "array", "maxItems": 1000, "items": {"type": "array", "maxItems": 1000}},
            "expansion",
            "/items",
        ),
        ({"type": "string", "maxLength": 10**6}, "maxLength", "/"),
        ({"type": "string", "minLength": -1}, "minLength", "/"),
        ({"type": "string", "pattern": "(ab){2000}"}, "pattern", "/"),
        ({"enum": list(range(1001))}, "enum", "/"),
        ({"type": "object", "maxProperties": 10**6}, "maxProperties", "/"),
        ({"$defs": {"big": {"type": "array", "minItems": 5000}}, "$ref": "#/$defs/big"}, "minItems", "/$ref"),
        ({"$ref": "#/nowhere"}, "$ref", "/"),
        ({"x-guidance": {"lenient": True}}, "x-guidance", None),
    ],
)
def test_over_the_bounds_is_refused_naming_keyword_and_place(
    schema: dict[str, Any], keyword: str, path: str | None
) -> None:
    with pytest.raises(BadInput) as caught:
        check_schema_bounds(schema, where=W)
    assert caught.value.details["keyword"] == keyword and keyword in caught.value.message
    assert caught.value.field == W
    if path is not None:
        assert caught.value.details["path"] == path


def test_size_and_depth_are_bounded() -> None:
    with pytest.raises(BadInput, match="bytes; the limit"):
        check_schema_bounds({"description": "x" * 70_000}, where=W)
    deep: dict[str, Any] = {"type": "boolean"}
    for _ in range(20):
        deep = {"type": "array", "items": deep}
    with pytest.raises(BadInput, match="nesting"):
        check_schema_bounds(deep, where=W)


def test_real_schemas_pass() -> None:
    recursive = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "maxItems": 8, "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    for schema in (
        {"type": "array", "minItems": 1000, "items": {"type": "integer"}},
        {
            "type": "object",
            "properties": {
                "tags": {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 64}}
            },
        },
        recursive,
        {
            "anyOf": [{"type": "string", "pattern": "^[a-z]{1,32}$"}, {"type": "null"}],
            "x-guidance": {"whitespace_flexible": True},
        },
    ):
        check_schema_bounds(schema, where=W)
    with pytest.raises(BadInput, match="expansion"):
        check_schema_bounds(
            {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 8192}},
            where=W,
            limits=SchemaLimits(max_expansion=10_000),
        )


PARAMS = {
    "type": "object",
    "properties": {"city": {"enum": ["Paris", "Oslo"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = (Tool("get_weather", "Weather", PARAMS), Tool("get_time", None, {"type": "object", "properties": {}}))


def request(**kw: Any) -> ChatRequest:
    return ChatRequest(messages=(ChatMessage("user", "hi"),), tools=TOOLS, **kw)


def test_tool_grammar_follows_tool_choice() -> None:
    auto = tool_schema(request())
    assert auto["anyOf"][0]["required"] == ["content"] and auto["anyOf"][1]["type"] == "array"
    assert auto["x-guidance"] == {"whitespace_flexible": False}
    named = tool_schema(request(tool_choice="get_weather"))
    assert (
        named["properties"]["name"] == {"const": "get_weather"} and named["properties"]["arguments"] == PARAMS
    )
    single = tool_schema(request(tool_choice="required", parallel_tool_calls=False))
    assert [s["properties"]["name"]["const"] for s in single["anyOf"]] == ["get_weather", "get_time"]


def test_tool_answers_parse_and_check() -> None:
    content, calls = parse_tool_answer(request(), '{"content": "hello"}')
    assert content == "hello" and calls == ()
    _, calls = parse_tool_answer(request(), '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]
    check_tool_calls(request(), calls)
    with pytest.raises(AttemptFailed, match="do not match its schema"):
        check_tool_calls(request(), (ToolCall("c1", "get_weather", '{"city": "Rome"}'),))
    with pytest.raises(AttemptFailed, match="not offered"):
        check_tool_calls(
            request(tool_choice="get_time"), (ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)
        )
    with pytest.raises(AttemptFailed, match="requires a function call"):
        check_tool_calls(request(tool_choice="required"), ())


def test_template_messages_explain_tools_and_flatten_tool_turns() -> None:
    chat = ChatRequest(
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Weather?"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)),
            ChatMessage("tool", "sunny", tool_call_id="c1"),
        ),
        tools=TOOLS,
    )
    turns = template_messages(chat)
    assert (
        turns[0]["role"] == "system"
        and turns[0]["content"].startswith("Be brief.")
        and "get_weather" in turns[0]["content"]
    )
    assert json.loads(turns[2]["content"]) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert turns[3] == {"role": "user", "content": "Result of function call c1: sunny"}
    assert chat.as_openai_messages()[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert (
        template_messages(ChatRequest(messages=chat.messages, tools=TOOLS, tool_choice="none"))[0]["content"]
        == "Be brief."
    )

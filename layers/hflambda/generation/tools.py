"""Tool calls on local models: the prompt that lists the tools, the grammar, and the answer's parsing.

A local model answers a tool request with one JSON document, constrained by guided
decoding exactly like ``response_format: json_schema``:

- a call is ``{"name": "<tool>", "arguments": {...}}``, the arguments constrained by the
  tool's own ``parameters`` schema (the name by ``const``);
- ``tool_choice: "required"`` allows calls only: one call, or with ``parallel_tool_calls``
  (the default) a list of 1 to ``MAX_PARALLEL_CALLS`` calls; a named tool is one call of it;
- ``tool_choice: "auto"`` (the default with tools) also allows ``{"content": "<text>"}``:
  the model answers in text instead of calling.

The chain checks each call's arguments against the tool's schema like any JSON answer.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hflambda.generation.base import ChatRequest, Tool, ToolCall
from hflambda.generation.exceptions import AttemptFailed, FailureKind

__all__ = [
    "MAX_PARALLEL_CALLS",
    "check_tool_calls",
    "chosen_tools",
    "parallel",
    "parse_tool_answer",
    "template_messages",
    "tool_schema",
]

MAX_PARALLEL_CALLS = 4
_GUIDANCE = {"whitespace_flexible": False}


def chosen_tools(request: ChatRequest) -> tuple[Tool, ...]:
    """The tools the answer may call (one, for a named ``tool_choice``)."""
    if request.tool_choice not in (None, "auto", "none", "required"):
        return tuple(t for t in request.tools if t.name == request.tool_choice)
    return request.tools


def parallel(request: ChatRequest) -> bool:
    """Whether the answer may hold several calls (never for a named tool_choice: that forces one call)."""
    return request.parallel_tool_calls and request.tool_choice in (None, "auto", "required")


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters or {"type": "object"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_schema(request: ChatRequest) -> dict[str, Any]:
    """The JSON schema the tool answer is decoded under (see the module docstring)."""
    calls = [_call_schema(t) for t in chosen_tools(request)]
    one: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
    answer = (
        {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS}
        if parallel(request)
        else one
    )
    if request.tool_choice in (None, "auto"):
        text = {
            "type": "object",
            "properties": {"content": {"type": "string"}},
            "required": ["content"],
            "additionalProperties": False,
        }
        return {"anyOf": [text, answer], "x-guidance": _GUIDANCE}
    return {**answer, "x-guidance": _GUIDANCE}


def _instructions(request: ChatRequest) -> str:
    listing = "\n".join(
        json.dumps(
            {"name": t.name, "description": t.description or "", "parameters": t.parameters},
            separators=(",", ":"),
        )
        for t in chosen_tools(request)
    )
    call = '{"name": <function name>, "arguments": <arguments object>}'
    if parallel(request):
        call = f"a JSON list of calls, each {call}"
    how = f"To call functions, answer with {call}."
    if request.tool_choice in (None, "auto"):
        how += ' To answer without calling, answer {"content": <your answer>}.'
    return f"You can call these functions:\n{listing}\n{how}"


def template_messages(request: ChatRequest) -> list[dict[str, str]]:
    """The conversation as plain role/content turns for a chat template, tools explained in a system turn.

    Tool results become user turns and earlier calls assistant turns holding their JSON, so
    any chat template renders them.
    """
    out: list[dict[str, str]] = []
    for m in request.messages:
        if m.role == "tool":
            out.append({"role": "user", "content": f"Result of function call {m.tool_call_id}: {m.content}"})
        elif m.tool_calls:
            calls = [{"name": c.name, "arguments": json.loads(c.arguments or "{}")} for c in m.tool_calls]
            out.append({"role": "assistant", "content": json.dumps(calls)})
        else:
            out.append({"role": m.role, "content": m.content})
    if request.calls_tools:
        guide = _instructions(request)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{guide}"}
        else:
            out.insert(0, {"role": "system", "content": guide})
    return out


def parse_tool_answer(request: ChatRequest, text: str) -> tuple[str, tuple[ToolCall, ...]]:
    """``(content, calls)`` from a local tool answer; AttemptFailed(invalid_output) if it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AttemptFailed(
            FailureKind.INVALID_OUTPUT, f"tool answer is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from None
    if isinstance(value, dict) and set(value) == {"content"} and request.tool_choice in (None, "auto"):
        return str(value["content"]), ()
    calls: list[ToolCall] = []
    for item in value if isinstance(value, list) else [value]:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("arguments"), dict)
        ):
            raise AttemptFailed(
                FailureKind.INVALID_OUTPUT, f"tool answer is not a function call: {text[:80]!r}"
            )
        calls.append(
            ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}", name=item["name"], arguments=json.dumps(item["arguments"])
            )
        )
    return "", tuple(calls)


def check_tool_calls(request: ChatRequest, calls: tuple[ToolCall, ...]) -> None:
    """AttemptFailed(invalid_output) unless every call names an offered tool with schema-valid arguments,
    and calls are there when ``tool_choice`` demands them."""
    import jsonschema

    if not calls:
        if request.tool_choice not in (None, "auto", "none"):
            raise AttemptFailed(
                FailureKind.INVALID_OUTPUT,
                f"tool_choice {request.tool_choice!r} requires a function call; the answer has none",
            )
        return
    if not request.calls_tools:
        raise AttemptFailed(
            FailureKind.INVALID_OUTPUT,
            "the answer calls a function although tool_choice is 'none' or no tools were offered",
        )
    if len(calls) > 1 and not parallel(request):
        raise AttemptFailed(
            FailureKind.INVALID_OUTPUT,
            f"the answer has {len(calls)} calls; one was asked for (parallel_tool_calls false or a named tool_choice)",
        )
    tools = {t.name: t for t in chosen_tools(request)}
    for call in calls:
        tool = tools.get(call.name)
        if tool is None:
            raise AttemptFailed(
                FailureKind.INVALID_OUTPUT,
                f"the answer calls {call.name!r}, which is not offered ({', '.join(tools)})",
            )
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            raise AttemptFailed(
                FailureKind.INVALID_OUTPUT,
                f"arguments of {call.name} are not valid JSON: {call.arguments[:80]!r}",
            ) from None
        schema = tool.parameters or {}
        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(arguments)
        )
        if error is not None:
            raise AttemptFailed(
                FailureKind.INVALID_OUTPUT,
                f"arguments of {call.name} do not match its schema: {error.message}",
            )

"""The generation contract: a chat request in, one completion out, from a local or remote engine.

These are plain data (no HTTP types): the predict router converts the OpenAI request into a
``ChatRequest``, the chain hands it to one ``ChatEngine`` after another, and the first
``Completion`` whose text passes ``validate_output`` answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from hflambda.generation.exceptions import AttemptFailed, FailureKind

__all__ = [
    "ChatEngine",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "FinishReason",
    "ResponseFormat",
    "StreamingChatEngine",
    "Tool",
    "ToolCall",
    "guidance_schema",
    "stream_completion",
    "validate_output",
]

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the JSON text of its arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: name, description and the JSON schema of its arguments."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of the conversation (content is plain text; tool turns carry their call ids)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``text`` (free), ``json_object`` (any JSON object) or ``json_schema`` (``schema`` must validate)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None

    @property
    def wants_json(self) -> bool:
        """True when the answer must be a JSON document."""
        return self.type != "text"


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the caller asked for, engine-neutral.

    ``temperature`` follows OpenAI: None means the default (1.0, sampling), 0 means greedy.
    ``max_tokens`` None means "as many as the model's limits allow".
    """

    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    tools: tuple[Tool, ...] = ()
    # "auto" | "none" | "required" | a tool's name; None: "auto" with tools, else no tools
    tool_choice: str | None = None
    parallel_tool_calls: bool = True

    @property
    def calls_tools(self) -> bool:
        """True when the answer may (or must) be tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def wants_json(self) -> bool:
        """True when decoding is constrained to JSON (a response format or tool calls)."""
        return self.response_format.wants_json or self.calls_tools

    def as_openai_messages(self) -> list[dict[str, Any]]:
        """The messages in OpenAI's wire format (for OpenAI-compatible providers)."""
        out: list[dict[str, Any]] = []
        for m in self.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.tool_calls:
                item["content"] = m.content or None
                item["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            if m.tool_call_id is not None:
                item["tool_call_id"] = m.tool_call_id
            out.append(item)
        return out


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer, with token counts and what produced it."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    engine: str  # e.g. "onnxruntime-genai int4" or "remote router.example/v1 model-id"
    tool_calls: tuple[ToolCall, ...] = ()


@runtime_checkable
class ChatEngine(Protocol):
    """A model that completes chats: a local ONNX Runtime GenAI model or a remote provider route."""

    alias: str

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        """Answer ``request`` within ``timeout`` seconds or raise ``AttemptFailed``."""
        ...


@runtime_checkable
class StreamingChatEngine(ChatEngine, Protocol):
    """An engine that hands out text as it is generated."""

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[str | Completion]:
        """Text pieces as they are generated, then the ``Completion`` (always last)."""
        ...


def stream_completion(
    engine: ChatEngine, request: ChatRequest, *, timeout: float
) -> Iterator[str | Completion]:
    """``engine.stream`` when it streams, else its whole answer as one piece, then the Completion."""
    if isinstance(engine, StreamingChatEngine):
        yield from engine.stream(request, timeout=timeout)
        return
    completion = engine.complete(request, timeout=timeout)
    if completion.text:
        yield completion.text
    yield completion


def guidance_schema(response_format: ResponseFormat) -> dict[str, Any] | None:
    """The JSON schema to constrain decoding with, or None for free text.

    Whitespace between JSON tokens is fixed (``x-guidance.whitespace_flexible = false``):
    with flexible whitespace a weak model can emit blanks until ``max_tokens`` and never
    close the document. A caller's own ``x-guidance`` wins.
    """
    if response_format.type == "text":
        return None
    schema: dict[str, Any] = (
        dict(response_format.schema)
        if response_format.type == "json_schema" and response_format.schema
        else {"type": "object"}
    )
    schema.setdefault("x-guidance", {"whitespace_flexible": False})
    return schema


def validate_output(response_format: ResponseFormat, text: str) -> Any:
    """Parse and check ``text`` against the requested format; AttemptFailed(invalid_output) if it fails.

    Returns the parsed JSON value (None for free text).
    """
    if not response_format.wants_json:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text[:80] + ("..." if len(text) > 80 else "")
        raise AttemptFailed(
            FailureKind.INVALID_OUTPUT, f"answer is not valid JSON ({exc.msg} at char {exc.pos}): {snippet!r}"
        ) from None
    if response_format.type == "json_object":
        if not isinstance(value, dict):
            raise AttemptFailed(
                FailureKind.INVALID_OUTPUT, f"answer is JSON but not an object (got {type(value).__name__})"
            )
        return value
    import jsonschema

    schema = response_format.schema or {}
    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise AttemptFailed(
            FailureKind.INVALID_OUTPUT, f"answer does not match the JSON schema at {where}: {error.message}"
        )
    return value

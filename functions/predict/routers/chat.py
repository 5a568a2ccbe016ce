"""``POST /v1/chat/completions`` — OpenAI chat over registry aliases, with fallback chains.

The alias asked for answers if it can; otherwise its fallbacks, in registry order, within
the request's time budget. ``model`` in the response is the alias that answered and
``hflambda.attempts`` (also the ``x-hflambda-attempts`` header) lists every attempt. When no
model answers, the error lists each attempt with its reason (502/503/504; 400
``context_length_exceeded`` when the prompt fits no model).

``stream: true`` answers server-sent events in OpenAI's format (``chat.completion.chunk``
objects, then ``data: [DONE]``). The chain runs until an attempt produces its first piece,
so an unanswerable request still gets its JSON error and status; the last chunk carries
``hflambda.attempts``. Behind API Gateway (which buffers) the same event stream arrives as
one response.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.errors import error_body, request_id, responses
from functions.predict.schemas import (
    NEUTRAL_PARAMETERS,
    UNSUPPORTED_PARAMETERS,
    ChatAttempt,
    ChatChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageIn,
    ChatTrace,
    ChatUsage,
    NamedToolChoice,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ToolCallFunction,
    ToolCallOut,
)
from hflambda.errors import BadInput
from hflambda.generation import (
    Attempt,
    ChainResult,
    ChatMessage,
    ChatRequest,
    Completion,
    ResponseFormat,
    StreamStart,
    Tool,
    ToolCall,
    chain_for,
    check_schema_bounds,
    engine_factory,
    run_chain,
    stream_chain,
)
from hflambda.telemetry import logger, metrics

router = APIRouter(tags=["chat"])

MAX_STOP = 4
MAX_TOOLS = 64
LAMBDA_MARGIN_S = 1.0  # leave the function time to send the response


def _check_schema(schema: dict[str, Any], where: str) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadInput(f"{where} is not a valid JSON Schema: {exc.message}", field=where) from None
    check_schema_bounds(schema, where=where)


def _response_format(body: ChatCompletionRequest) -> ResponseFormat:
    fmt = body.response_format
    if isinstance(fmt, ResponseFormatJsonObject):
        return ResponseFormat(type="json_object")
    if isinstance(fmt, ResponseFormatJsonSchema):
        schema = fmt.json_schema.schema_
        _check_schema(schema, "response_format.json_schema.schema")
        return ResponseFormat(
            type="json_schema", schema=schema, name=fmt.json_schema.name, strict=fmt.json_schema.strict
        )
    return ResponseFormat()


def _refuse_unsupported(body: ChatCompletionRequest) -> None:
    """400 naming the first parameter this server cannot honour (never silently ignored)."""
    for name, value in (body.model_extra or {}).items():
        if value is None:
            continue
        if name in NEUTRAL_PARAMETERS:
            allowed, why = NEUTRAL_PARAMETERS[name]
            if value not in allowed:
                raise BadInput(
                    f"{name}={json.dumps(value)} is not supported: {why} (accepted: {', '.join(json.dumps(a) for a in allowed)} or null)",
                    field=name,
                )
        elif name in UNSUPPORTED_PARAMETERS:
            raise BadInput(f"{name} is not supported: {UNSUPPORTED_PARAMETERS[name]}", field=name)
        else:
            raise BadInput(
                f"unknown parameter {name!r}: this server refuses parameters it cannot honour instead of ignoring them",
                field=name,
            )


def _text(message: ChatMessageIn, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for j, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise BadInput(
                f"messages[{index}].content[{j}] is a {part.type!r} part; only text parts are supported",
                field=f"messages[{index}].content[{j}].type",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _messages(body: ChatCompletionRequest) -> tuple[ChatMessage, ...]:
    out = []
    for i, m in enumerate(body.messages):
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in m.tool_calls or ()
        )
        if m.role == "tool" and not m.tool_call_id:
            raise BadInput(
                f"messages[{i}] has role 'tool' but no tool_call_id", field=f"messages[{i}].tool_call_id"
            )
        role = "system" if m.role == "developer" else m.role
        out.append(ChatMessage(role=role, content=_text(m, i), tool_calls=calls, tool_call_id=m.tool_call_id))
    return tuple(out)


def _tools(body: ChatCompletionRequest) -> tuple[tuple[Tool, ...], str | None]:
    tools = body.tools or []
    if len(tools) > MAX_TOOLS:
        raise BadInput(f"tools has {len(tools)} functions; the limit is {MAX_TOOLS}", field="tools")
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise BadInput("tools: function names must be unique", field="tools")
    out = []
    for i, t in enumerate(tools):
        parameters = t.function.parameters or {"type": "object", "properties": {}}
        _check_schema(parameters, f"tools[{i}].function.parameters")
        out.append(
            Tool(
                name=t.function.name,
                description=t.function.description,
                parameters=parameters,
                strict=t.function.strict,
            )
        )
    choice = body.tool_choice
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise BadInput(
                f"tool_choice names {choice.function.name!r}, which is not in tools ({', '.join(names) or 'none given'})",
                field="tool_choice",
            )
        return tuple(out), choice.function.name
    if choice == "required" and not tools:
        raise BadInput("tool_choice 'required' needs tools", field="tool_choice")
    return tuple(out), choice


def to_chat_request(body: ChatCompletionRequest) -> ChatRequest:
    """The engine-neutral request; BadInput naming what this API does not do (n > 1, logprobs, ...)."""
    _refuse_unsupported(body)
    if (body.n or 1) != 1:
        raise BadInput(f"n={body.n} is not supported: one choice per request", field="n")
    if body.stream_options is not None and not body.stream:
        raise BadInput("stream_options is only allowed with stream=true", field="stream_options")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > MAX_STOP or any(not s for s in stop):
        raise BadInput(f"stop takes at most {MAX_STOP} non-empty sequences", field="stop")
    tools, tool_choice = _tools(body)
    return ChatRequest(
        messages=_messages(body),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        response_format=_response_format(body),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
    )


def request_budget(request: Request, budget_seconds: float) -> float:
    """Seconds this request may spend: the configured budget, within the Lambda's remaining time."""
    context = request.scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        return max(0.0, min(budget_seconds, remaining() / 1000 - LAMBDA_MARGIN_S))
    return budget_seconds


def _trace(attempts: list[Attempt], engine: str) -> ChatTrace:
    return ChatTrace(
        attempts=[
            ChatAttempt(
                model=a.alias, ok=a.ok, reason=None if a.ok else f"{a.kind}: {a.reason}", seconds=a.seconds
            )
            for a in attempts
        ],
        engine=engine,
    )


def _attempts_header(attempts: list[Attempt]) -> str:
    return ", ".join(f"{a.alias}={'ok' if a.ok else a.kind}" for a in attempts)


def _tool_calls(completion: Completion) -> list[ToolCallOut] | None:
    calls = [
        ToolCallOut(id=c.id, function=ToolCallFunction(name=c.name, arguments=c.arguments))
        for c in completion.tool_calls
    ]
    return calls or None


def _usage(completion: Completion) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        total_tokens=completion.prompt_tokens + completion.completion_tokens,
    )


# 400 refused parameter or prompt too long for every model; 401/503 Caller; 404 unknown alias;
# 413/415 body guard; 422 schema; 502/503/504 exhausted chain (broken / temporary / out of time)
@router.post(
    "/v1/chat/completions",
    operation_id="create_chat_completion",
    response_model=ChatCompletionResponse,
    responses=responses(400, 401, 404, 413, 415, 422, 502, 503, 504),
)
def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    response: Response,
    pool: Pool,
    settings: SettingsDep,
    _caller: Caller,
) -> ChatCompletionResponse | StreamingResponse:
    """Complete a chat with the alias or, failing that, its fallbacks; JSON answers and tool calls are schema-checked."""
    # engine failures are logged by the chain, in this thread: tag them with the request id
    logger.thread_safe_append_keys(request_id=request_id(request))
    try:
        return _complete(body, request, response, pool, settings)
    finally:
        logger.thread_safe_remove_keys(["request_id"])


def _complete(
    body: ChatCompletionRequest, request: Request, response: Response, pool: Pool, settings: SettingsDep
) -> ChatCompletionResponse | StreamingResponse:
    chat = to_chat_request(body)
    chain = chain_for(pool.registry, body.model)
    budget = request_budget(request, settings.chat_budget_seconds)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(
            request,
            stream_chain(chat, chain, engine_factory(pool, settings), budget_seconds=budget),
            include_usage=include_usage,
        )
    result = run_chain(chat, chain, engine_factory(pool, settings), budget_seconds=budget)
    metrics.add_metric(name="ChatFallbacks", unit=MetricUnit.Count, value=len(result.attempts) - 1)
    completion = result.completion
    response.headers["x-hflambda-model"] = result.alias
    response.headers["x-hflambda-attempts"] = _attempts_header(result.attempts)
    calls = _tool_calls(completion)
    return ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=result.alias,
        choices=[
            ChatChoice(
                message=ChatCompletionMessage(content=None if calls else completion.text, tool_calls=calls),
                finish_reason=completion.finish_reason,
            )
        ],
        usage=_usage(completion),
        hflambda=_trace(result.attempts, completion.engine),
    )


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _stream(
    request: Request, events: Iterator[StreamStart | str | ChainResult], *, include_usage: bool
) -> StreamingResponse:
    """The SSE response; the chain runs here up to its first piece, so failures keep their status."""
    first = next(events)  # FallbackExhausted / ContextLengthExceeded raise here, as JSON errors
    assert isinstance(first, StreamStart)
    rid = request_id(request)
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": first.alias,
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return _sse(
            {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra,
            }
        )

    def body() -> Iterator[bytes]:
        yield chunk({"role": "assistant", "content": ""}, **({"usage": None} if include_usage else {}))
        try:
            for event in events:
                if isinstance(event, str):
                    yield chunk({"content": event}, **({"usage": None} if include_usage else {}))
                elif isinstance(event, ChainResult):
                    completion = event.completion
                    metrics.add_metric(
                        name="ChatFallbacks", unit=MetricUnit.Count, value=len(event.attempts) - 1
                    )
                    if completion.tool_calls:
                        calls = [
                            {
                                "index": i,
                                "id": c.id,
                                "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments},
                            }
                            for i, c in enumerate(completion.tool_calls)
                        ]
                        yield chunk({"tool_calls": calls})
                    trace = _trace(event.attempts, completion.engine).model_dump()
                    yield chunk(
                        {},
                        completion.finish_reason,
                        hflambda=trace,
                        **({"usage": None} if include_usage else {}),
                    )
                    if include_usage:
                        yield _sse({**base, "choices": [], "usage": _usage(completion).model_dump()})
        except Exception as exc:  # after the first byte the status is sent: the error becomes an event
            status, error = error_body(exc, rid)
            logger.warning(
                "stream ended by an error",
                extra={"request_id": rid, "status": status, "code": error["error"]["type"]},
            )
            yield _sse(error)
        yield b"data: [DONE]\n\n"

    headers = {
        "x-hflambda-model": first.alias,
        "x-hflambda-attempts": _attempts_header(first.attempts)
        + (", " if first.attempts else "")
        + f"{first.alias}=streaming",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

"""``POST /v1/chat/completions`` — OpenAI chat over registry aliases, with fallback chains.

The alias asked for answers if it can; otherwise its fallbacks, in registry order, within
the request's time budget. ``model`` in the response is the alias that answered and
``hflambda.attempts`` (also the ``x-hflambda-attempts`` header) lists every attempt. When no
model answers, the error lists each attempt with its reason (502/503/504, never 500).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import APIRouter, Request, Response

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.schemas import (
    ChatAttempt,
    ChatChoice,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatTrace,
    ChatUsage,
    ErrorResponse,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
)
from hflambda.errors import BadInput
from hflambda.generation import ChatMessage, ChatRequest, ResponseFormat, chain_for, engine_factory, run_chain
from hflambda.telemetry import metrics

router = APIRouter(tags=["chat"])

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 422, 502, 503, 504)}
MAX_STOP = 4
LAMBDA_MARGIN_S = 1.0  # leave the function time to send the response


def _text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content)  # type: ignore[attr-defined]


def _response_format(body: ChatCompletionRequest) -> ResponseFormat:
    fmt = body.response_format
    if isinstance(fmt, ResponseFormatJsonObject):
        return ResponseFormat(type="json_object")
    if isinstance(fmt, ResponseFormatJsonSchema):
        import jsonschema

        schema = fmt.json_schema.schema_
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise BadInput(f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}", field="response_format.json_schema.schema") from None
        return ResponseFormat(type="json_schema", schema=schema, name=fmt.json_schema.name, strict=fmt.json_schema.strict)
    return ResponseFormat()


def to_chat_request(body: ChatCompletionRequest) -> ChatRequest:
    """The engine-neutral request; BadInput for what this API does not do (stream, n > 1, ...)."""
    if body.stream:
        raise BadInput("stream=true is not supported: this endpoint answers with one complete JSON response; send stream=false", field="stream")
    if body.n != 1:
        raise BadInput(f"n={body.n} is not supported: one choice per request", field="n")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > MAX_STOP or any(not s for s in stop):
        raise BadInput(f"stop takes at most {MAX_STOP} non-empty sequences", field="stop")
    messages = tuple(
        ChatMessage(role="system" if m.role == "developer" else m.role, content=_text(m.content)) for m in body.messages
    )
    return ChatRequest(
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        response_format=_response_format(body),
    )


def request_budget(request: Request, budget_seconds: float) -> float:
    """Seconds this request may spend: the configured budget, within the Lambda's remaining time."""
    context = request.scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        return max(0.0, min(budget_seconds, remaining() / 1000 - LAMBDA_MARGIN_S))
    return budget_seconds


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=ERRORS)
def create_chat_completion(
    body: ChatCompletionRequest, request: Request, response: Response, pool: Pool, settings: SettingsDep, _caller: Caller
) -> ChatCompletionResponse:
    """Complete a chat with the alias or, failing that, its fallbacks; JSON answers are schema-checked."""
    chat = to_chat_request(body)
    chain = chain_for(pool.registry, body.model)
    result = run_chain(chat, chain, engine_factory(pool, settings), budget_seconds=request_budget(request, settings.chat_budget_seconds))
    metrics.add_metric(name="ChatFallbacks", unit=MetricUnit.Count, value=len(result.attempts) - 1)
    completion = result.completion
    response.headers["x-hflambda-model"] = result.alias
    response.headers["x-hflambda-attempts"] = ", ".join(f"{a.alias}={'ok' if a.ok else a.kind}" for a in result.attempts)
    return ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=result.alias,
        choices=[ChatChoice(message=ChatCompletionMessage(content=completion.text), finish_reason=completion.finish_reason)],
        usage=ChatUsage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.prompt_tokens + completion.completion_tokens,
        ),
        hflambda=ChatTrace(
            attempts=[ChatAttempt(model=a.alias, ok=a.ok, reason=None if a.ok else f"{a.kind}: {a.reason}", seconds=a.seconds) for a in result.attempts],
            engine=completion.engine,
        ),
    )

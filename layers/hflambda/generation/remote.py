"""Remote generation: an OpenAI-compatible provider (Hugging Face Inference Providers, vLLM, ...).

Registry fields: ``base_url`` (the API root, e.g. ``https://router.example/v1``),
``provider_model`` (the provider's model id), ``api_key_secret`` (Secrets Manager name or
ARN of the key; unset: no Authorization header, for keyless local servers).

The key is read through Powertools parameters (``get_secret``, cached ``secret_max_age``
seconds), never from the environment: a missing or unreadable secret is a failed attempt
naming the secret. The secret may hold the bare key or JSON with ``api_key``/``token``/``key``.

Every provider failure becomes an ``AttemptFailed`` with the fallback trigger it stands for
(404 → not_found, 429 → rate_limited, 503 → unavailable, other errors → upstream_error,
no answer in time → timeout, a 400 about context length → context_too_long).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from hflambda.generation.base import ChatRequest, Completion, FinishReason, ToolCall
from hflambda.generation.exceptions import AttemptFailed, FailureKind, RemoteCheckFailed, RemoteModelMissing
from hflambda.registry import ModelSpec
from hflambda.settings import Settings

__all__ = ["RemoteChatEngine", "check_remote_model", "provider_api_key", "shared_client"]

CONTEXT_HINTS = (
    "context_length",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
)
CHECK_TIMEOUT_S = 10.0

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """One HTTP client per process (keeps provider connections alive between invocations)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False, headers={"user-agent": "hflambda"})
        return _client


def provider_api_key(spec: ModelSpec, settings: Settings) -> str | None:
    """The provider key from ``spec.api_key_secret`` (None when the spec names no secret).

    Raises RemoteCheckFailed naming the secret when it cannot be read or holds no key.
    """
    if not spec.api_key_secret:
        return None
    from aws_lambda_powertools.utilities import parameters

    try:
        raw = parameters.get_secret(spec.api_key_secret, max_age=settings.secret_max_age)
    except Exception as exc:  # Powertools wraps boto errors in its own types
        raise RemoteCheckFailed(
            f"cannot read the API key secret {spec.api_key_secret!r} of model {spec.alias!r}: {type(exc).__name__}: {exc}",
            secret=spec.api_key_secret,
        ) from exc
    value = raw.decode() if isinstance(raw, bytes) else str(raw)
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            data = {}
        value = next(
            (
                str(data[k]).strip()
                for k in ("api_key", "token", "key")
                if isinstance(data, dict) and data.get(k)
            ),
            "",
        )
    if not value:
        raise RemoteCheckFailed(
            f"the API key secret {spec.api_key_secret!r} of model {spec.alias!r} is empty",
            secret=spec.api_key_secret,
        )
    return value


def _error_message(response: httpx.Response) -> str:
    """The provider's own error text (OpenAI shape ``{"error": {"message"}}`` or anything else)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or error)[:300]
        return str(error)[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _failure(response: httpx.Response, spec: ModelSpec) -> AttemptFailed:
    """The fallback trigger for a non-2xx provider answer."""
    status = response.status_code
    message = _error_message(response)
    where = f"{spec.base_url} ({spec.provider_model})"
    if status == 404:
        return AttemptFailed(FailureKind.NOT_FOUND, f"provider {where} answered 404: {message}")
    if status == 429:
        retry = _retry_after(response)
        hint = f", retry after {retry:g} s" if retry is not None else ""
        return AttemptFailed(
            FailureKind.RATE_LIMITED, f"provider {where} answered 429{hint}: {message}", retry_after=retry
        )
    if status in (400, 413, 422) and any(h in message.lower() for h in CONTEXT_HINTS):
        return AttemptFailed(FailureKind.CONTEXT_TOO_LONG, f"provider {where} answered {status}: {message}")
    if status in (401, 403):
        return AttemptFailed(
            FailureKind.UPSTREAM,
            f"provider {where} refused the API key ({status}; check secret {spec.api_key_secret!r}): {message}",
        )
    if status == 503:
        return AttemptFailed(
            FailureKind.UNAVAILABLE,
            f"provider {where} answered 503: {message}",
            retry_after=_retry_after(response),
        )
    return AttemptFailed(FailureKind.UPSTREAM, f"provider {where} answered {status}: {message}")


class RemoteChatEngine:
    """A registry alias served by an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, spec: ModelSpec, settings: Settings, *, client: httpx.Client | None = None) -> None:
        if not spec.base_url or not spec.provider_model:
            raise ValueError(
                f"model {spec.alias!r} is not a remote model (base_url and provider_model are required)"
            )
        self.alias = spec.alias
        self.spec = spec
        self.settings = settings
        self.base_url = spec.base_url.rstrip("/")
        self.provider_model = spec.provider_model
        self._client = client

    @property
    def client(self) -> httpx.Client:
        """The HTTP client (injected, else the process-wide one)."""
        return self._client or shared_client()

    def _headers(self) -> dict[str, str]:
        try:
            key = provider_api_key(self.spec, self.settings)
        except RemoteCheckFailed as exc:
            raise AttemptFailed(FailureKind.UPSTREAM, exc.message) from exc
        return {"authorization": f"Bearer {key}"} if key else {}

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The OpenAI request body sent to the provider."""
        cap = (
            self.spec.max_output_tokens
            if request.max_tokens is None
            else min(request.max_tokens, self.spec.max_output_tokens)
        )
        body: dict[str, Any] = {
            "model": self.provider_model,
            "messages": request.as_openai_messages(),
            "max_tokens": cap,
            "stream": False,
        }
        for name in ("temperature", "top_p", "seed"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop:
            body["stop"] = list(request.stop)
        fmt = request.response_format
        if fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt.type == "json_schema":
            spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
            if fmt.strict is not None:
                spec["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "parameters": t.parameters,
                        **({"description": t.description} if t.description else {}),
                        **({"strict": t.strict} if t.strict is not None else {}),
                    },
                }
                for t in request.tools
            ]
            choice = request.tool_choice
            if choice is not None:
                body["tool_choice"] = (
                    choice
                    if choice in ("auto", "none", "required")
                    else {"type": "function", "function": {"name": choice}}
                )
            body["parallel_tool_calls"] = request.parallel_tool_calls
        return body

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        """POST the chat to the provider; AttemptFailed with the trigger when it cannot answer."""
        url = f"{self.base_url}/chat/completions"
        try:
            response = self.client.post(
                url,
                json=self.body(request),
                headers=self._headers(),
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            )
        except httpx.TimeoutException:
            raise AttemptFailed(
                FailureKind.TIMEOUT,
                f"provider {self.base_url} ({self.provider_model}) did not answer within {timeout:.1f} s",
            ) from None
        except httpx.HTTPError as exc:
            raise AttemptFailed(
                FailureKind.UPSTREAM, f"cannot reach provider {self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 300:
            raise _failure(response, self.spec)
        return self._parse(response)

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[str | Completion]:
        """Free text streamed from the provider (its SSE deltas as they arrive), then the Completion.

        JSON answers (a response format, tool calls) are asked for whole: the chain validates
        them before sending a byte anyway.
        """
        if request.wants_json:
            completion = self.complete(request, timeout=timeout)
            if completion.text:
                yield completion.text
            yield completion
            return
        deadline = time.monotonic() + timeout
        body = {**self.body(request), "stream": True, "stream_options": {"include_usage": True}}
        where = f"provider {self.base_url} ({self.provider_model})"
        pieces: list[str] = []
        finish: FinishReason = "stop"
        usage: dict[str, Any] = {}
        try:
            with self.client.stream(
                "POST",
                f"{self.base_url}/chat/completions",
                json=body,
                headers=self._headers(),
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            ) as response:
                if response.status_code >= 300:
                    response.read()
                    raise _failure(response, self.spec)
                for line in response.iter_lines():
                    if time.monotonic() > deadline:
                        raise AttemptFailed(
                            FailureKind.TIMEOUT, f"{where} did not finish within {timeout:.1f} s"
                        )
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    try:
                        event = json.loads(line[5:])
                    except ValueError:
                        raise AttemptFailed(
                            FailureKind.UPSTREAM, f"{where} sent an unreadable stream event: {line[:120]!r}"
                        ) from None
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            pieces.append(text)
                            yield text
                        if choice.get("finish_reason") == "length":
                            finish = "length"
        except httpx.TimeoutException:
            raise AttemptFailed(
                FailureKind.TIMEOUT, f"{where} did not answer within {timeout:.1f} s"
            ) from None
        except httpx.HTTPError as exc:
            raise AttemptFailed(
                FailureKind.UPSTREAM, f"cannot reach provider {self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        yield Completion(
            text="".join(pieces),
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            engine=f"remote {self.base_url} {self.provider_model}",
        )

    def _parse(self, response: httpx.Response) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AttemptFailed(
                FailureKind.UPSTREAM,
                f"provider {self.base_url} sent an unreadable chat completion: {response.text[:120]!r}",
            ) from None
        calls = self._tool_calls(choice["message"].get("tool_calls"))
        if content is None and calls:
            content = ""
        if not isinstance(content, str):
            raise AttemptFailed(
                FailureKind.UPSTREAM,
                f"provider {self.base_url} sent no text content (got {type(content).__name__})",
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        reason = choice.get("finish_reason")
        finish: FinishReason = "length" if reason == "length" else "tool_calls" if calls else "stop"
        return Completion(
            text=content,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            engine=f"remote {self.base_url} {self.provider_model}",
            tool_calls=calls,
        )

    def _tool_calls(self, raw: Any) -> tuple[ToolCall, ...]:
        if not raw:
            return ()
        try:
            return tuple(
                ToolCall(
                    id=str(c.get("id") or f"call_{i}"),
                    name=str(c["function"]["name"]),
                    arguments=str(c["function"].get("arguments") or "{}"),
                )
                for i, c in enumerate(raw)
            )
        except (KeyError, TypeError, AttributeError):
            raise AttemptFailed(
                FailureKind.UPSTREAM, f"provider {self.base_url} sent unreadable tool calls"
            ) from None


def check_remote_model(spec: ModelSpec, settings: Settings, *, client: httpx.Client | None = None) -> str:
    """Confirm ahead of time that ``spec.provider_model`` answers at ``spec.base_url``.

    First the provider's model listing (``GET {base_url}/models``, free); when the listing
    is missing or does not name the model, a 1-token chat request decides. Returns a
    one-line description; raises RemoteModelMissing (the provider does not know the model)
    or RemoteCheckFailed (unreachable, key refused, rate limited, ...).
    """
    engine = RemoteChatEngine(spec, settings, client=client)
    timeout = min(spec.timeout_seconds, CHECK_TIMEOUT_S)
    headers = {"authorization": f"Bearer {key}"} if (key := provider_api_key(spec, settings)) else {}
    where = f"{engine.base_url} ({engine.provider_model})"
    listed: list[str] = []
    try:
        response = engine.client.get(f"{engine.base_url}/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RemoteCheckFailed(
            f"model {spec.alias!r}: cannot reach {engine.base_url}: {type(exc).__name__}: {exc}"
        ) from None
    if response.status_code in (401, 403):
        raise RemoteCheckFailed(
            f"model {spec.alias!r}: {engine.base_url} refused the API key ({response.status_code}); check secret {spec.api_key_secret!r}"
        )
    if response.status_code == 200:
        try:
            listed = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            listed = []
        wanted = {engine.provider_model, engine.provider_model.split(":")[0]}
        if wanted & set(listed):
            return f"{where}: listed by the provider ({len(listed)} models)"
    # no listing, or a listing without the model: ask the model itself for one token
    probe = ChatRequest(messages=(), max_tokens=1, temperature=0)
    body = {**engine.body(probe), "messages": [{"role": "user", "content": "ping"}]}
    try:
        answer = engine.client.post(
            f"{engine.base_url}/chat/completions", json=body, headers=headers, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise RemoteCheckFailed(
            f"model {spec.alias!r}: {where} did not answer a 1-token request: {type(exc).__name__}: {exc}"
        ) from None
    if answer.status_code == 404:
        known = (
            f"; the provider lists {', '.join(listed[:5])}{' ...' if len(listed) > 5 else ''}"
            if listed
            else ""
        )
        raise RemoteModelMissing(
            f"model {spec.alias!r}: provider {engine.base_url} does not serve {engine.provider_model!r} (404: {_error_message(answer)}){known}"
        )
    if answer.status_code >= 300:
        failure = _failure(answer, spec)
        raise RemoteCheckFailed(f"model {spec.alias!r}: 1-token request failed: {failure.message}")
    try:
        answer.json()["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RemoteCheckFailed(
            f"model {spec.alias!r}: {where} sent an unreadable chat completion to a 1-token request"
        ) from None
    return f"{where}: answered a 1-token request"

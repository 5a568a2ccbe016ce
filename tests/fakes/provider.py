"""A local OpenAI-compatible provider on 127.0.0.1, scriptable per model id.

It speaks the real protocol (``GET /v1/models``, ``POST /v1/chat/completions``, streamed as
SSE chunks when the request says ``stream``, OpenAI error bodies), so hflambda's real remote
client runs against it. Each provider model id gets a
``Behaviour``: answer (with given content), fail with a status (404/429/500/503/400 about
context length), hang (answer nothing for a while), or send an unreadable body. Unknown model
ids answer 404 like a real provider. Every request is recorded.

    with FakeProvider() as provider:
        provider.script("good/model", Behaviour.answer('{"ok": true}'))
        provider.script("dead/model", Behaviour.fail(404))
        provider.url  # "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal

__all__ = ["Behaviour", "FakeProvider", "Recorded"]

Kind = Literal["answer", "fail", "hang", "garbage"]


@dataclass(frozen=True)
class Behaviour:
    """What the fake does for one model id."""

    kind: Kind
    content: str = "Hello from the fake provider."
    status: int = 200
    message: str = ""
    delay: float = 0.0
    listed: bool = True  # appears in GET /v1/models
    retry_after: int | None = None
    finish_reason: str = "stop"
    tool_calls: tuple[tuple[str, str], ...] = ()  # (function name, arguments JSON)

    @classmethod
    def answer(
        cls,
        content: str = "Hello from the fake provider.",
        *,
        listed: bool = True,
        finish_reason: str = "stop",
    ) -> Behaviour:
        """200 with a chat completion whose message content is ``content``."""
        return cls("answer", content=content, listed=listed, finish_reason=finish_reason)

    @classmethod
    def call(cls, *calls: tuple[str, str]) -> Behaviour:
        """200 with ``message.tool_calls`` (name, arguments JSON) and ``finish_reason: "tool_calls"``."""
        return cls("answer", content="", finish_reason="tool_calls", tool_calls=calls)

    @classmethod
    def fail(
        cls, status: int, message: str = "", *, retry_after: int | None = None, listed: bool = True
    ) -> Behaviour:
        """An OpenAI-shaped error with ``status`` (404, 429, 500, 503, 400 ...)."""
        return cls(
            "fail",
            status=status,
            message=message or f"fake provider error {status}",
            retry_after=retry_after,
            listed=listed,
        )

    @classmethod
    def context_too_long(cls) -> Behaviour:
        """400 the way OpenAI-compatible servers report an over-long prompt."""
        return cls(
            "fail",
            status=400,
            message="This model's maximum context length is 32 tokens. However, you requested 4096 tokens.",
        )

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Behaviour:
        """Accept the request and send nothing for ``seconds`` (then a normal answer)."""
        return cls("hang", delay=seconds)

    @classmethod
    def garbage(cls) -> Behaviour:
        """200 with a body that is not JSON at all."""
        return cls("garbage")


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None


@dataclass
class FakeProvider:
    """The server; ``url`` is its OpenAI API root (``.../v1``)."""

    host: str = "127.0.0.1"
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    required_key: str | None = None  # when set, requests need "Authorization: Bearer <key>"
    list_models: bool = True  # False: GET /v1/models answers 404 (providers without a listing)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # --- scripting --------------------------------------------------------------------------

    def script(self, model_id: str, behaviour: Behaviour) -> None:
        """Set what ``model_id`` does from now on."""
        with self._lock:
            self.behaviours[model_id] = behaviour

    def reset(self) -> None:
        """Forget every behaviour and recorded request; no key required, listing on."""
        with self._lock:
            self.behaviours.clear()
            self.requests.clear()
            self.required_key = None
            self.list_models = True

    def chat_requests(self, model_id: str | None = None) -> list[Recorded]:
        """Recorded chat completion requests (for one model id, if given)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.endswith("/chat/completions")
                and (model_id is None or (r.body or {}).get("model") == model_id)
            ]

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("FakeProvider is not started")
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    def start(self) -> FakeProvider:
        """Serve on a free loopback port in a daemon thread."""
        server = ThreadingHTTPServer((self.host, 0), _handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (hanging requests are released at once)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- protocol ---------------------------------------------------------------------------

    @staticmethod
    def _message(behaviour: Behaviour) -> dict[str, Any]:
        if not behaviour.tool_calls:
            return {"role": "assistant", "content": behaviour.content}
        calls = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(behaviour.tool_calls)
        ]
        return {"role": "assistant", "content": None, "tool_calls": calls}

    def _completion(self, model: str, behaviour: Behaviour, body: dict[str, Any]) -> dict[str, Any]:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion_tokens = max(1, len(behaviour.content.split()))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": self._message(behaviour), "finish_reason": behaviour.finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class _Handler(BaseHTTPRequestHandler):
    """The fake's HTTP side; ``_handler`` binds it to one provider."""

    protocol_version = "HTTP/1.1"
    provider: ClassVar[FakeProvider]

    def _send(
        self, status: int, payload: Any, *, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json" if raw is None else "text/plain")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.wfile.write(data)

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": code, "code": code}}, headers=headers)

    def _authorized(self) -> bool:
        if self.provider.required_key is None:
            return True
        if self.headers.get("authorization") == f"Bearer {self.provider.required_key}":
            return True
        self._error(401, "Invalid credentials in Authorization header", "invalid_api_key")
        return False

    def _record(self, body: dict[str, Any] | None) -> None:
        with self.provider._lock:
            self.provider.requests.append(
                Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )

    def do_GET(self) -> None:
        self._record(None)
        if not self._authorized():
            return
        if self.path.rstrip("/") == "/v1/models" and self.provider.list_models:
            with self.provider._lock:
                listed = [m for m, b in self.provider.behaviours.items() if b.listed]
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in listed],
                },
            )
            return
        self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        self._record(body)
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}", "not_found")
            return
        if not isinstance(body, dict):
            self._error(400, "body is not JSON", "invalid_request_error")
            return
        model = str(body.get("model"))
        with self.provider._lock:
            behaviour = self.provider.behaviours.get(model)
        if behaviour is None:
            self._error(404, f"The model `{model}` does not exist.", "model_not_found")
            return
        self._answer(model, behaviour, body)

    def _answer(self, model: str, behaviour: Behaviour, body: dict[str, Any]) -> None:
        """What ``behaviour`` says the model does with this chat completion request."""
        if behaviour.kind == "fail":
            headers = (
                {"retry-after": str(behaviour.retry_after)} if behaviour.retry_after is not None else None
            )
            code = {404: "model_not_found", 429: "rate_limit_exceeded", 400: "context_length_exceeded"}.get(
                behaviour.status, "server_error"
            )
            self._error(behaviour.status, behaviour.message, code, headers)
            return
        if behaviour.kind == "hang":
            self.provider._stopping.wait(behaviour.delay)
        if behaviour.kind == "garbage":
            self._send(200, None, raw=b"<html>upstream proxy error</html>")
            return
        completion = self.provider._completion(model, behaviour, body)
        if body.get("stream"):
            self._send_stream(
                completion, include_usage=bool((body.get("stream_options") or {}).get("include_usage"))
            )
            return
        self._send(200, completion)

    def _send_stream(self, completion: dict[str, Any], *, include_usage: bool) -> None:
        """The completion as OpenAI SSE chunks: one per word of the content, then finish, usage, [DONE]."""
        choice = completion["choices"][0]
        base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        words = str(choice["message"].get("content") or "").split(" ")
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words) if w or i == 0]
        events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        events.append(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
        )
        if include_usage:
            events.append({**base, "choices": [], "usage": completion["usage"]})
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    """A handler class serving ``provider`` (one class per server: the provider is a class attribute)."""
    return type("Handler", (_Handler,), {"provider": provider})

"""Request bodies as received: the size limit on the bytes that actually arrive, and JSON whatever the content type.

``Content-Length`` is a claim, and a chunked body has none: this ASGI middleware counts
the bytes it receives and answers 413 as soon as they pass ``HFLAMBDA_MAX_BODY_BYTES``,
without reading (or holding) the rest. A body that is JSON is parsed as JSON whatever its
``content-type`` says (``curl -d``, ``requests.post(data=...)`` and AWS sample events send
``application/x-www-form-urlencoded`` or nothing); a body that is not JSON gets 415.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.predict.errors import error_response

__all__ = ["BodyGuard"]

JSON_TYPES = ("application/json", "+json")


class BodyGuard:
    """Pure ASGI middleware (so it sees every chunk): 413 past ``limit()`` bytes, 415 for non-JSON bodies."""

    def __init__(self, app: ASGIApp, *, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._refuse(
                scope,
                send,
                413,
                "payload_too_large",
                f"request body is {length} bytes; the limit is {limit} (HFLAMBDA_MAX_BODY_BYTES)",
            )
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._refuse(
                    scope,
                    send,
                    413,
                    "payload_too_large",
                    f"request body is over {limit} bytes (HFLAMBDA_MAX_BODY_BYTES); {received} received when it was refused",
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and not content_type.endswith(JSON_TYPES):
            try:
                json.loads(body)
            except ValueError:
                shown = content_type or "no content-type"
                await self._refuse(
                    scope,
                    send,
                    415,
                    "unsupported_media_type",
                    f"the body ({shown}) is not JSON; this API takes JSON bodies (content-type: application/json)",
                )
                return
            scope = {
                **scope,
                "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
                + [(b"content-type", b"application/json")],
            }
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        async def no_body() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        response = error_response(
            Request(scope, no_body), status, code, message, headers={"connection": "close"}
        )
        await response(scope, no_body, send)

"""The client side of the Runtime Interface Emulator's invoke endpoint, and an instance that
runs a function image under it (``containers.rie``).

RIE serves Lambda's Invoke API at ``POST /2015-03-31/functions/function/invocations`` on the
port it listens on; the reply body is the handler's result, or the runtime's error document
for a function error (see :func:`rehearsal.functions.classify_payload`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from rehearsal.functions import Invocation, classify_payload

__all__ = ["INVOKE_PATH", "post_invoke"]

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def post_invoke(base_url: str, event: dict[str, Any], *, timeout: float) -> Invocation:
    """POST ``event`` to an RIE endpoint and classify the reply as Lambda would."""
    response = httpx.post(
        base_url.rstrip("/") + INVOKE_PATH,
        content=json.dumps(event).encode(),
        headers={"content-type": "application/json"},
        timeout=httpx.Timeout(timeout, connect=10.0),
    )
    payload = response.content
    error = response.headers.get("x-amz-function-error") or classify_payload(payload)
    if response.status_code >= 500 and error is None:
        error = "Unhandled"
    return Invocation(payload=payload, function_error=error)

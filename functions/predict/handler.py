"""Lambda entry point for the predict API (API Gateway HTTP API, payload 2.0)."""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from functions.predict.app import app
from hflambda.telemetry import logger, metrics, tracer

_asgi = Mangum(app, lifespan="off")


def without_stage(event: dict[str, Any]) -> dict[str, Any]:
    """The event with a named stage's prefix taken off its path (``/prod/v1/models`` → ``/v1/models``).

    HTTP API (payload 2.0) puts a named stage in ``rawPath`` and ``requestContext.http.path``
    (Mangum routes on the latter); the ``$default`` stage has none. The stage comes from the
    event itself, so one image serves any stage name.
    """
    context = event.get("requestContext") or {}
    stage = context.get("stage")
    if not stage or stage == "$default":
        return event
    prefix = f"/{stage}"

    def strip(path: object) -> object:
        if isinstance(path, str) and (path == prefix or path.startswith(prefix + "/")):
            return path[len(prefix) :] or "/"
        return path

    event = {**event, "rawPath": strip(event.get("rawPath"))}
    if isinstance(context.get("http"), dict):
        event["requestContext"] = {
            **context,
            "http": {**context["http"], "path": strip(context["http"].get("path"))},
        }
    return event


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Hand the API Gateway event to the FastAPI app through Mangum.

    A streamed chat answer (SSE) is buffered by Mangum into this one response: the Python
    runtime client cannot stream a response (see README "Generation").
    """
    return _asgi(without_stage(event), cast(Any, context))  # Mangum's own LambdaContext protocol

"""Lambda entry point for the predict API (API Gateway HTTP API, payload 2.0)."""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from functions.predict.app import app
from hflambda.telemetry import logger, metrics, tracer

_asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Hand the API Gateway event to the FastAPI app through Mangum."""
    return _asgi(event, cast(Any, context))  # Mangum's own LambdaContext protocol

"""Lambda entry point for warmup (EventBridge schedule, and once after each deploy)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from hflambda.errors import BadInput, ModelNotFound
from hflambda.settings import get_settings
from hflambda.telemetry import logger, metrics
from hflambda.warmup.service import (
    emit_metrics,
    maintain_vectors_step,
    models_from_event,
    warmup_from_settings,
)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Warm every registry model (or ``event["models"]``: one alias or a list), then maintain
    the vector store; return the per-model result (``ok: false`` with ``error`` for an event
    naming no valid models).

    One model's failure never stops the others; the run result lists each with its reason.
    """
    settings = get_settings()

    def remaining() -> float:
        return float(context.get_remaining_time_in_millis()) / 1000

    try:
        aliases = models_from_event(event)
        result = warmup_from_settings(settings, aliases=aliases, remaining_seconds=remaining)
    except (BadInput, ModelNotFound) as exc:  # a bad event is the caller's to fix: say so in the result
        logger.error("warmup event refused", extra={"code": exc.code, "error": exc.message})
        metrics.add_metric(name="WarmupEventsRefused", unit=MetricUnit.Count, value=1)
        return {"ok": False, "error": {"code": exc.code, "message": exc.message}, "models": []}
    logger.append_keys(run_id=result.run_id)
    emit_metrics(result)
    summary = result.model_dump(mode="json")
    summary["ok"] = result.ok
    summary["vector_maintenance"] = maintain_vectors_step(settings, remaining)
    if not result.ok:
        logger.error(
            "warmup finished with failures",
            extra={"failed": [m.alias for m in result.models if m.status == "failed"]},
        )
    return summary

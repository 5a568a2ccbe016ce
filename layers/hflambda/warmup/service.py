"""The warmup job as the handler and the CLI run it: settings in, result and metrics out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from hflambda.errors import BadInput
from hflambda.registry import load_registry
from hflambda.settings import Settings
from hflambda.store import ModelStore
from hflambda.telemetry import logger, metrics
from hflambda.warmup.runner import Observer, run_warmup
from hflambda.warmup.types import ModelStatus, WarmupResult

__all__ = ["emit_metrics", "maintain_vectors_step", "models_from_event", "warmup_from_settings"]


def models_from_event(event: object) -> list[str] | None:
    """The aliases a warmup event asks for: ``{"models": "embed"}`` or ``{"models": ["embed", "chat"]}``.

    None (warm everything) when the event has no ``models`` (or it is null/empty); BadInput
    saying what is accepted for anything else (a number, a list holding non-strings, ...).
    """
    if not isinstance(event, dict):
        return None
    value = event.get("models")
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return list(dict.fromkeys(value))
    raise BadInput(
        f'event "models" must be one alias or a list of aliases (strings), got {json.dumps(value)[:200]}',
        field="models",
    )


def warmup_from_settings(
    settings: Settings,
    *,
    aliases: list[str] | None = None,
    remaining_seconds: Callable[[], float] | None = None,
    observer: Observer | None = None,
    source_options: dict[str, Any] | None = None,
) -> WarmupResult:
    """Load the registry named by settings and warm it into the configured store."""
    registry = load_registry(settings.registry, profile=settings.profile or None)
    return run_warmup(
        registry,
        ModelStore(settings.model_store),
        settings,
        aliases=aliases,
        remaining_seconds=remaining_seconds,
        observer=observer,
        source_options=source_options,
    )


def emit_metrics(result: WarmupResult) -> None:
    """EMF metrics for one run (every count is emitted, zeros included, so the ModelsFailed
    alarm sees data on every run): warmed, skipped, failed, deferred, locked, bytes
    downloaded and export seconds."""
    metrics.add_metric(name="ModelsWarmed", unit=MetricUnit.Count, value=result.count(ModelStatus.PUBLISHED))
    metrics.add_metric(name="ModelsSkipped", unit=MetricUnit.Count, value=result.count(ModelStatus.CURRENT))
    metrics.add_metric(name="ModelsFailed", unit=MetricUnit.Count, value=result.count(ModelStatus.FAILED))
    metrics.add_metric(name="ModelsDeferred", unit=MetricUnit.Count, value=result.count(ModelStatus.DEFERRED))
    metrics.add_metric(name="ModelsLocked", unit=MetricUnit.Count, value=result.count(ModelStatus.LOCKED))
    metrics.add_metric(
        name="BytesDownloaded", unit=MetricUnit.Bytes, value=sum(m.bytes_downloaded for m in result.models)
    )
    export_s = sum(m.timings.get("export_s", 0.0) for m in result.models)
    metrics.add_metric(name="ExportSeconds", unit=MetricUnit.Seconds, value=export_s)


def maintain_vectors_step(
    settings: Settings, remaining_seconds: Callable[[], float] | None = None
) -> dict[str, Any]:
    """The scheduled vector-store maintenance (compaction, ANN index, old versions) after warmup.

    Reported, never raised: maintenance failing must not hide the model results. Skipped
    when too little time is left in the invocation or no vector store exists yet.
    """
    import dataclasses
    import time

    if remaining_seconds is not None and remaining_seconds() < settings.warmup_reserve_seconds:
        return {"status": "deferred", "reason": f"less than {settings.warmup_reserve_seconds} s left"}
    uri = settings.vector_uri
    if settings.vector_backend == "local" and not Path(uri).exists():
        return {"status": "skipped", "reason": f"no vector store at {uri} yet"}
    started = time.perf_counter()
    try:
        from hflambda.vectors import maintain_vectors

        report = maintain_vectors(settings)
    except Exception as exc:  # reported in the result and the log, with the metric below
        logger.exception("vector maintenance failed", extra={"vector_uri": uri})
        metrics.add_metric(name="VectorMaintenanceFailed", unit=MetricUnit.Count, value=1)
        return {
            "status": "failed",
            "reason": f"{type(exc).__name__}: {exc}",
            "seconds": round(time.perf_counter() - started, 1),
        }
    return {"status": "done", **dataclasses.asdict(report)}

"""The predict API: FastAPI app, importable as ``functions.predict.app:app``.

Models load here at import (module scope) through the pool's cached factories, not in a
lifespan hook: Mangum runs with ``lifespan="off"`` and Lambda freezes the process between
invocations, so import time is the one init phase we can rely on.
"""

from __future__ import annotations

from fastapi import FastAPI

from functions.predict import errors
from functions.predict.body import BodyGuard
from functions.predict.routers import chat, documents, embeddings, health, predict, search
from hflambda.engines import get_pool
from hflambda.settings import get_settings
from hflambda.telemetry import MetricUnit, logger, metrics

app = FastAPI(
    title="hflambda predict",
    version="1",
    description="Hugging Face models served from ONNX: embeddings, classification, generation, search.",
)
errors.install(app)


app.add_middleware(BodyGuard, limit=lambda: get_settings().max_body_bytes)

for module in (health, embeddings, predict, chat, documents, search):
    app.include_router(module.router)


def _record_load(alias: str, load_ms: float) -> None:
    metrics.add_metric(name="ModelLoadMs", unit=MetricUnit.Milliseconds, value=load_ms)
    logger.info("model loaded", extra={"model": alias, "load_ms": round(load_ms, 1)})


get_pool().on_load = _record_load
PRELOAD = get_pool().preload()
for _alias, _error in PRELOAD.items():
    if _error:
        logger.warning(
            "preload failed; requests for this model answer 503 until warmup publishes it",
            extra={"model": _alias, "reason": _error},
        )

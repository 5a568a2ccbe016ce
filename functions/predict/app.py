"""The predict API: FastAPI app, importable as ``functions.predict.app:app``.

Models load here at import (module scope) through the pool's cached factories, not in a
lifespan hook: Mangum runs with ``lifespan="off"`` and Lambda freezes the process between
invocations, so import time is the one init phase we can rely on.
"""

from __future__ import annotations

from fastapi import FastAPI

from functions.predict import errors
from functions.predict.routers import embeddings, health, predict
from hflambda.engines import get_pool
from hflambda.telemetry import logger

app = FastAPI(
    title="hflambda predict",
    version="1",
    description="Hugging Face models served from ONNX: embeddings, classification, generation, search.",
)
errors.install(app)
for module in (health, embeddings, predict):
    app.include_router(module.router)

PRELOAD = get_pool().preload()
for _alias, _error in PRELOAD.items():
    if _error:
        logger.warning("preload failed; requests for this model answer 503 until warmup publishes it", extra={"model": _alias, "reason": _error})

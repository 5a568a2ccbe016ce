"""``POST /v1/models/{alias}/predict`` — one route, dispatched on the model's task."""

from __future__ import annotations

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.errors import responses
from functions.predict.schemas import (
    ClassificationOutput,
    EmbeddingOutput,
    LabelScore,
    PredictRequest,
    PredictResponse,
)
from hflambda.errors import BadInput, PayloadTooLarge
from hflambda.registry import Task
from hflambda.telemetry import record_inference

router = APIRouter(tags=["predict"])


# 400 a generation model or a text over max_tokens; 401/503 Caller; 404 unknown alias; 413 body guard
# and HFLAMBDA_MAX_BATCH; 415 body guard; 422 schema; 503 model not ready
@router.post(
    "/v1/models/{alias}/predict",
    operation_id="predict",
    response_model=PredictResponse,
    responses=responses(400, 401, 404, 413, 415, 422, 503),
)
def predict(
    alias: str, body: PredictRequest, pool: Pool, settings: SettingsDep, _caller: Caller
) -> ClassificationOutput | EmbeddingOutput:
    """Run ``inputs`` through model ``alias``: labels for classifiers, vectors for embedders."""
    if len(body.inputs) > settings.max_batch:
        raise PayloadTooLarge(
            f"inputs has {len(body.inputs)} texts; the limit is {settings.max_batch} per request",
            field="inputs",
        )
    spec = pool.registry.get(alias)
    with record_inference(alias, len(body.inputs)):
        if spec.task == Task.TEXT_CLASSIFICATION:
            classifier = pool.classifier(alias)
            results = classifier.classify(list(body.inputs), top_k=body.top_k, truncate=body.truncate)
            return ClassificationOutput(
                model=alias,
                revision=classifier.model.revision,
                predictions=[
                    [LabelScore(label=label, score=score) for label, score in row] for row in results
                ],
            )
        if spec.task == Task.EMBEDDINGS:
            embedder = pool.embedder(alias)
            vectors = embedder.embed(list(body.inputs), truncate=body.truncate)
            return EmbeddingOutput(
                model=alias,
                revision=embedder.model.revision,
                dimensions=embedder.dimensions,
                embeddings=vectors.tolist(),
            )
    raise BadInput(
        f"model {alias!r} is a {spec.task.value} model; use /v1/chat/completions for text generation",
        field="alias",
    )

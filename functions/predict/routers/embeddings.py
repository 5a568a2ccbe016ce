"""``POST /v1/embeddings`` — the OpenAI embeddings API over registry aliases."""

from __future__ import annotations

import base64

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.schemas import (
    EmbeddingItem,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ErrorResponse,
)
from hflambda.errors import BadInput, PayloadTooLarge
from hflambda.telemetry import record_inference

router = APIRouter(tags=["embeddings"])

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)
}


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS)
def create_embeddings(body: EmbeddingRequest, pool: Pool, settings: SettingsDep, _caller: Caller) -> EmbeddingResponse:
    """Embed one text or a batch; vectors are pooled and L2-normalised like sentence-transformers."""
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if len(texts) > settings.max_batch:
        raise PayloadTooLarge(f"input has {len(texts)} texts; the limit is {settings.max_batch} per request", field="input")
    embedder = pool.embedder(body.model)
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise BadInput(f"dimensions={body.dimensions} is not supported by {body.model!r}, which produces {embedder.dimensions}", field="dimensions")
    with record_inference(body.model, len(texts)):
        vectors = embedder.embed(texts, truncate=body.truncate)
    tokens = sum(min(n, embedder.max_tokens) for n in embedder.count_tokens(texts))
    data = [
        EmbeddingItem(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else v.tolist())
        for i, v in enumerate(vectors)
    ]
    return EmbeddingResponse(data=data, model=body.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))

"""``POST /v1/embeddings`` — the OpenAI embeddings API over registry aliases."""

from __future__ import annotations

import base64

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.errors import responses
from functions.predict.schemas import (
    MAX_EMBEDDING_INPUTS,
    EmbeddingItem,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)
from hflambda.errors import BadInput, PayloadTooLarge
from hflambda.telemetry import record_inference

router = APIRouter(tags=["embeddings"])

# Lambda's synchronous response limit (API Gateway passes it through), with room for headers
RESPONSE_LIMIT_BYTES = 6_291_456 - 65_536
# worst-case JSON bytes of one vector element: a float32 as a Python float repr and a comma
# ("-0.012345678901234567," is 22); base64 is 4 bytes per element, 4/3 expanded
FLOAT_BYTES = 24
ITEM_OVERHEAD = 64  # {"object":"embedding","index":2047,"embedding":...},


def max_inputs(dimensions: int, encoding_format: str) -> int:
    """Most vectors of ``dimensions`` whose response fits Lambda's 6 MB in ``encoding_format``."""
    per_item = (
        dimensions * FLOAT_BYTES if encoding_format == "float" else -(-dimensions * 4 // 3) + 4
    ) + ITEM_OVERHEAD
    return min(MAX_EMBEDDING_INPUTS, RESPONSE_LIMIT_BYTES // per_item)


# 400 dimensions, token ids or a text over max_tokens; 401/503 Caller; 404 unknown alias; 413 body
# guard and batch limits; 415 body guard; 422 schema; 503 model not ready
@router.post(
    "/v1/embeddings",
    operation_id="create_embeddings",
    response_model=EmbeddingResponse,
    responses=responses(400, 401, 404, 413, 415, 422, 503),
)
def create_embeddings(
    body: EmbeddingRequest, pool: Pool, settings: SettingsDep, _caller: Caller
) -> EmbeddingResponse:
    """Embed one text or a batch (up to 2,048 when the response fits 6 MB); vectors are pooled and L2-normalised like sentence-transformers."""
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise PayloadTooLarge(
            f"input has {len(texts)} texts; the limit is {MAX_EMBEDDING_INPUTS} per request",
            field="input",
            max_inputs=MAX_EMBEDDING_INPUTS,
        )
    embedder = pool.embedder(body.model)
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise BadInput(
            f"dimensions={body.dimensions} is not supported by {body.model!r}, which produces {embedder.dimensions}",
            field="dimensions",
        )
    fits = max_inputs(embedder.dimensions, body.encoding_format)
    if len(texts) > fits:
        other = "base64" if body.encoding_format == "float" else "float"
        raise PayloadTooLarge(
            f"input has {len(texts)} texts; the response for more than {fits} vectors of {embedder.dimensions} dimensions "
            f"in encoding_format={body.encoding_format} would exceed Lambda's 6 MB response limit. Send batches of at most {fits} "
            f"(encoding_format={other} fits {max_inputs(embedder.dimensions, other)})",
            field="input",
            max_inputs=fits,
        )
    with record_inference(body.model, len(texts)):
        vectors = embedder.embed(texts, truncate=body.truncate)
    tokens = sum(min(n, embedder.max_tokens) for n in embedder.count_tokens(texts))
    data = [
        EmbeddingItem(
            index=i,
            embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else v.tolist(),
        )
        for i, v in enumerate(vectors)
    ]
    return EmbeddingResponse(
        data=data, model=body.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )

"""``POST /v1/search`` — semantic search within the caller's own documents.

The query is embedded with the registry's default embedding model and compared only with
vectors of that model's live revision, filtered to ``user_id`` = the verified caller's
``sub`` (never a user named in the body).
"""

from __future__ import annotations

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.errors import responses
from functions.predict.schemas import SearchRequest, SearchResponse, SearchResult
from hflambda.errors import HflambdaError, UpstreamError
from hflambda.registry import Task
from hflambda.telemetry import logger, record_inference
from hflambda.vectors import VectorSpace, get_vector_store
from hflambda.vectors.base import filter_tags

router = APIRouter(tags=["search"])


# 400 a filter no store evaluates; 401/503 Caller; 404 no default embedding model; 413/415 body guard;
# 422 schema; 502 the vector store failed; 503 model not ready or vector store not configured
@router.post(
    "/v1/search",
    operation_id="search_documents",
    response_model=SearchResponse,
    responses=responses(400, 401, 404, 413, 415, 422, 502, 503),
)
def search(body: SearchRequest, caller: Caller, pool: Pool, settings: SettingsDep) -> SearchResponse:
    """The caller's documents nearest to ``query``, one result per document, best first."""
    filter_tags(body.filter)  # a filter no store can evaluate is the caller's 400, before any work
    alias = pool.registry.default(Task.EMBEDDINGS).alias
    embedder = pool.embedder(alias)
    with record_inference(alias, 1):
        vector = embedder.embed([body.query], truncate=True)[0]
    space = VectorSpace.of(embedder)
    try:
        hits = get_vector_store(settings).search(
            caller.sub, vector, space=space, top_k=body.top_k, filter=body.filter
        )
    except HflambdaError:
        raise  # bad input (400) or a typed store condition: mapped as such, never a blanket 502
    except Exception as exc:
        logger.exception("vector store search failed")
        raise UpstreamError(
            f"the vector store could not be searched ({type(exc).__name__}); retry later"
        ) from exc
    return SearchResponse(
        model=alias,
        revision=space.revision,
        data=[
            SearchResult(
                id=h.document_id,
                score=h.score,
                text=h.text,
                chunk=h.chunk,
                start=h.start,
                end=h.end,
                metadata=h.metadata,
            )
            for h in hits
        ],
    )

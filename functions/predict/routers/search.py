"""``POST /v1/search`` — semantic search within the caller's own documents.

The query is embedded with the registry's default embedding model and compared only with
vectors of that model's live revision, filtered to ``user_id`` = the verified caller's
``sub`` (never a user named in the body).
"""

from __future__ import annotations

from fastapi import APIRouter

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.routers.documents import ERRORS
from functions.predict.schemas import SearchRequest, SearchResponse, SearchResult
from hflambda.errors import HflambdaError, UpstreamError
from hflambda.registry import Task
from hflambda.telemetry import logger, record_inference
from hflambda.vectors import VectorSpace, get_vector_store
from hflambda.vectors.base import filter_tags

router = APIRouter(tags=["search"])


@router.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
def search(body: SearchRequest, caller: Caller, pool: Pool, settings: SettingsDep) -> SearchResponse:
    """The caller's documents nearest to ``query``, one result per document, best first."""
    filter_tags(body.filter)  # a filter no store can evaluate is the caller's 400, before any work
    alias = pool.registry.default(Task.EMBEDDINGS).alias
    embedder = pool.embedder(alias)
    with record_inference(alias, 1):
        vector = embedder.embed([body.query], truncate=True)[0]
    space = VectorSpace.of(embedder)
    try:
        hits = get_vector_store(settings).search(caller.sub, vector, space=space, top_k=body.top_k, filter=body.filter)
    except HflambdaError:
        raise  # bad input (400) or a typed store condition: mapped as such, never a blanket 502
    except Exception as exc:
        logger.exception("vector store search failed")
        raise UpstreamError(f"the vector store could not be searched ({type(exc).__name__}); retry later") from exc
    return SearchResponse(
        model=alias,
        revision=space.revision,
        data=[
            SearchResult(id=h.document_id, score=h.score, text=h.text, chunk=h.chunk, start=h.start, end=h.end, metadata=h.metadata)
            for h in hits
        ],
    )

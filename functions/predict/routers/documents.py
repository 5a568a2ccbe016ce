"""``POST /v1/documents`` and ``DELETE /v1/documents/{id}`` — enqueue index messages (202).

The user id of every message is the verified caller's ``sub``; the body cannot name one.
Per-document limits (characters, metadata bytes, filterable bytes, tokens) answer 413 here
rather than failing later at the index function; ids must be deletable (no ``/``).
"""

from __future__ import annotations

from fastapi import APIRouter, Path, status

from functions.predict.deps import Caller, Pool, SettingsDep
from functions.predict.errors import responses
from functions.predict.schemas import (
    MAX_DOCUMENTS_PER_REQUEST,
    DocumentsAccepted,
    DocumentsRequest,
    DocumentStatus,
)
from hflambda.errors import BadInput, HflambdaError, PayloadTooLarge
from hflambda.indexing import chunk_over_limits, document_over_limits
from hflambda.queue import PublishResult, get_index_queue
from hflambda.registry import Task
from hflambda.settings import Settings

router = APIRouter(tags=["documents"])


def _statuses(result: PublishResult) -> DocumentsAccepted:
    documents = [
        DocumentStatus(id=q.document_id, status="queued", message_id=q.message_id) for q in result.queued
    ]
    documents += [
        DocumentStatus(id=f.document_id, status="failed", error=f"{f.code}: {f.reason}")
        for f in result.failed
    ]
    return DocumentsAccepted(queued=len(result.queued), failed=len(result.failed), documents=documents)


def _check_limits(body: DocumentsRequest, pool: Pool, settings: Settings) -> None:
    """The per-document limits the index function enforces, answered here first (413/400).

    Tokens are counted with the default embedding model's tokenizer when it is loaded (the
    index function counts again, so a document is never indexed past a limit either way)."""
    count_tokens = None
    try:
        embedder = pool.embedder(pool.registry.default(Task.EMBEDDINGS).alias)
        count_tokens = getattr(embedder, "count_tokens", None)
    except HflambdaError:
        pass  # not warmed yet: the index function checks tokens and chunks
    for i, document in enumerate(body.documents):
        if "/" in document.id or document.id in (".", ".."):
            raise BadInput(
                f"documents[{i}].id {document.id!r}: a document id cannot contain '/' or be '.' or '..' "
                "(DELETE /v1/documents/{id} must be able to name it)",
                field=f"documents[{i}].id",
            )
        reason = document_over_limits(document.text, document.metadata, settings)
        if reason is None and count_tokens is not None:
            tokens = int(count_tokens([document.text])[0]) - 2  # without [CLS]/[SEP]
            reason = chunk_over_limits(tokens, 0, settings)
        if reason is not None:
            raise PayloadTooLarge(f"documents[{i}]: {reason}", field=f"documents[{i}]")


# 400 id or message invalid; 401/503 Caller; 413 body guard and per-document limits; 415 body guard;
# 422 schema; 503 queue not configured. A message SQS refuses is a "failed" entry of the 202.
@router.post(
    "/v1/documents",
    operation_id="add_documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentsAccepted,
    responses=responses(400, 401, 413, 415, 422, 503),
)
def add_documents(
    body: DocumentsRequest, caller: Caller, settings: SettingsDep, pool: Pool
) -> DocumentsAccepted:
    """Queue documents for indexing under the caller's identity; per document: queued or failed."""
    if len(body.documents) > MAX_DOCUMENTS_PER_REQUEST:
        raise PayloadTooLarge(
            f"documents has {len(body.documents)} items; the limit is {MAX_DOCUMENTS_PER_REQUEST} per request",
            field="documents",
        )
    _check_limits(body, pool, settings)
    queue = get_index_queue(settings)
    result = queue.upsert(caller.sub, [d.model_dump() for d in body.documents])
    return _statuses(result)


# 400 message invalid (a sub over its limit); 401/503 Caller; 413/415 the body guard (it reads any
# DELETE body); 422 id over 512 characters; 503 queue not configured
@router.delete(
    "/v1/documents/{document_id:path}",
    operation_id="delete_document",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentsAccepted,
    responses=responses(400, 401, 413, 415, 422, 503),
)
def delete_document(
    caller: Caller,
    settings: SettingsDep,
    document_id: str = Path(
        min_length=1, max_length=512, description="Id of the caller's document to delete (URL-encoded)."
    ),
) -> DocumentsAccepted:
    """Queue the deletion of one of the caller's documents (every chunk of it).

    The rest of the path is the id, so even an id containing ``/`` (refused at creation
    now, accepted before) can be erased."""
    return _statuses(get_index_queue(settings).delete(caller.sub, [document_id]))

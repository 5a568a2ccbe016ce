"""``POST /v1/documents`` and ``DELETE /v1/documents/{id}`` — enqueue index messages (202).

The user id of every message is the verified caller's ``sub``; the body cannot name one.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, status

from functions.predict.deps import Caller, SettingsDep
from functions.predict.schemas import (
    MAX_DOCUMENTS_PER_REQUEST,
    DocumentsAccepted,
    DocumentsRequest,
    DocumentStatus,
    ErrorResponse,
)
from hflambda.errors import PayloadTooLarge
from hflambda.queue import PublishResult, get_index_queue

router = APIRouter(tags=["documents"])

ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503)}


def _statuses(result: PublishResult) -> DocumentsAccepted:
    documents = [DocumentStatus(id=q.document_id, status="queued", message_id=q.message_id) for q in result.queued]
    documents += [DocumentStatus(id=f.document_id, status="failed", error=f"{f.code}: {f.reason}") for f in result.failed]
    return DocumentsAccepted(queued=len(result.queued), failed=len(result.failed), documents=documents)


@router.post("/v1/documents", status_code=status.HTTP_202_ACCEPTED, response_model=DocumentsAccepted, responses=ERRORS)
def add_documents(body: DocumentsRequest, caller: Caller, settings: SettingsDep) -> DocumentsAccepted:
    """Queue documents for indexing under the caller's identity; per document: queued or failed."""
    if len(body.documents) > MAX_DOCUMENTS_PER_REQUEST:
        raise PayloadTooLarge(
            f"documents has {len(body.documents)} items; the limit is {MAX_DOCUMENTS_PER_REQUEST} per request",
            field="documents",
        )
    queue = get_index_queue(settings)
    result = queue.upsert(caller.sub, [d.model_dump() for d in body.documents])
    return _statuses(result)


@router.delete(
    "/v1/documents/{document_id}", status_code=status.HTTP_202_ACCEPTED, response_model=DocumentsAccepted, responses=ERRORS
)
def delete_document(
    caller: Caller,
    settings: SettingsDep,
    document_id: str = Path(min_length=1, max_length=512, description="Id of the caller's document to delete."),
) -> DocumentsAccepted:
    """Queue the deletion of one of the caller's documents (every chunk of it)."""
    return _statuses(get_index_queue(settings).delete(caller.sub, [document_id]))

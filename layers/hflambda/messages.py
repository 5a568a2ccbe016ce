"""Index-queue messages: the versioned JSON contract between producers and the index function.

```json
{"v": 1, "op": "upsert", "user_id": "u1", "ts": 1732280000000,
 "document": {"id": "d1", "text": "...", "metadata": {"lang": "en"}}}
{"v": 1, "op": "delete", "user_id": "u1", "ts": 1732280000500, "document_id": "d1"}
```

``ts`` orders versions of one document: an older message never overwrites (or resurrects)
a newer one. It is epoch milliseconds (an ISO-8601 timestamp is accepted and converted),
set by the producer — ideally the source row's ``updated_at`` — and optional: a message
without it is ordered by the SQS ``SentTimestamp`` of its delivery. At equal ``ts`` a delete
wins over an upsert, and two upserts are ordered by a digest of their content, so every
replica of the store agrees on the winner whatever the delivery order.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

__all__ = [
    "MAX_DOCUMENT_ID",
    "MAX_USER_ID",
    "SCHEMA_VERSION",
    "DeleteMessage",
    "Document",
    "IndexMessage",
    "MessageInvalid",
    "UpsertMessage",
    "now_ms",
    "parse_message",
    "version_key",
]

SCHEMA_VERSION = 1
MAX_USER_ID = 256
MAX_DOCUMENT_ID = 512
_TS_DIGITS = 15  # epoch ms stays below 10**15 until the year 33658


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def version_key(ts: int, op: str, digest: str = "") -> str:
    """A string whose lexicographic order is the newest-wins order of document versions.

    ``(ts, op rank, digest)``: later ``ts`` wins; at equal ``ts`` a delete beats an upsert;
    two upserts at equal ``ts`` are ordered by content digest (arbitrary but the same
    everywhere, so redeliveries in any order converge).
    """
    rank = 1 if op == "delete" else 0
    return f"{ts:0{_TS_DIGITS}d}.{rank}.{digest}"


# characters SQS refuses in a message body that JSON does not escape by itself
_SQS_UNSAFE = re.compile("[\ufffe\uffff]")


def _encodable(value: str, what: str) -> str:
    """``value`` unless it holds an unpaired surrogate (not UTF-8; no queue or table takes it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} contains an unpaired surrogate (not valid Unicode text)") from None
    return value


def _to_epoch_ms(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("ts datetime must carry a timezone")
        return int(value.timestamp() * 1000)
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("ts must be epoch milliseconds or an ISO-8601 timestamp") from exc
        return _to_epoch_ms(parsed)
    return value


class Document(BaseModel):
    """One document to index: its id (unique per user), text, and JSON metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=MAX_DOCUMENT_ID, description="Document id, unique per user.")
    text: str = Field(min_length=1, description="The text to embed (chunked by tokens when long).")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON object stored with the document; scalar values (and lists of scalars) are filterable.",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value

    # (pydantic refuses unpaired surrogates in str fields; metadata values are Any)
    @field_validator("metadata")
    @classmethod
    def _metadata_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            _encodable(json.dumps(value, ensure_ascii=False, allow_nan=False), "metadata")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be plain JSON: {exc}") from None
        return value

    def digest(self) -> str:
        """16 hex chars of sha256 over the text and canonical metadata."""
        blob = json.dumps([self.text, self.metadata], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(default=1, description="Schema version of the message.")
    user_id: str = Field(
        min_length=1, max_length=MAX_USER_ID, description="Owner of the document (a JWT sub)."
    )
    ts: int | None = Field(
        None,
        ge=0,
        description="Version of the document in epoch ms (ISO-8601 accepted); default: SQS SentTimestamp.",
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _normalise_ts(cls, value: Any) -> Any:
        return _to_epoch_ms(value)

    def to_body(self) -> str:
        """The SQS message body: compact JSON in contract order, ``ts`` left out when unset."""
        data = self.model_dump(mode="json", exclude_none=True)
        ordered = {key: data.pop(key) for key in ("v", "op", "user_id") if key in data}
        body = json.dumps({**ordered, **data}, ensure_ascii=False, separators=(",", ":"))
        # U+FFFE/U+FFFF only occur inside JSON strings: escaping them keeps the JSON equal
        return _SQS_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", body)


class UpsertMessage(_Message):
    """Create or replace a document (all its chunks)."""

    op: Literal["upsert"] = "upsert"
    document: Document

    @property
    def document_id(self) -> str:
        """The id of the document this message writes."""
        return self.document.id

    def version(self, fallback_ts: int) -> str:
        """This message's version key (``fallback_ts`` when it carries no ``ts``)."""
        return version_key(self.ts if self.ts is not None else fallback_ts, self.op, self.document.digest())


class DeleteMessage(_Message):
    """Remove a document (every chunk) for the user."""

    op: Literal["delete"] = "delete"
    document_id: str = Field(min_length=1, max_length=MAX_DOCUMENT_ID)

    def version(self, fallback_ts: int) -> str:
        """This message's version key (``fallback_ts`` when it carries no ``ts``)."""
        return version_key(self.ts if self.ts is not None else fallback_ts, self.op)


IndexMessage = Annotated[UpsertMessage | DeleteMessage, Field(discriminator="op")]
_ADAPTER: TypeAdapter[UpsertMessage | DeleteMessage] = TypeAdapter(IndexMessage)


class MessageInvalid(ValueError):
    """A message body that does not follow the contract; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        loc = ".".join(str(p) for p in item["loc"] if p not in ("upsert", "delete")) or "body"
        parts.append(f"{loc}: {item['msg']}")
    more = len(error.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_message(body: str | bytes) -> UpsertMessage | DeleteMessage:
    """Validate one message body; MessageInvalid says why it is not a valid message."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageInvalid(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageInvalid(f"body must be a JSON object, got {type(data).__name__}")
    if data.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise MessageInvalid(f"unsupported message version v={data.get('v')!r}; this consumer reads v=1")
    if data.get("op") not in ("upsert", "delete"):
        raise MessageInvalid(f"op must be 'upsert' or 'delete', got {data.get('op')!r}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise MessageInvalid(f"invalid {data['op']} message: {_describe(exc)}") from None

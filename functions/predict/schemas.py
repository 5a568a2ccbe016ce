"""HTTP request/response types of the predict API, in one place (they shape the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hflambda.errors import BadInput

# --- errors ---------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """One error: stable ``type``, a message saying what to do, the offending ``param``."""

    type: str = Field(description="Stable error code, e.g. model_not_ready, invalid_token.")
    code: str | None = Field(
        None,
        description="The same stable code (OpenAI clients read error.code, e.g. context_length_exceeded).",
    )
    message: str
    param: str | None = Field(None, description="The request field that is wrong, if any.")
    details: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error body has this shape (OpenAI clients read ``error.message``)."""

    error: ErrorDetail


# --- health and models ------------------------------------------------------------------


class ModelState(BaseModel):
    """A registry model as the serving process sees it."""

    id: str = Field(description="Registry alias.")
    object: Literal["model"] = "model"
    created: int = Field(
        0, description="Unix time the live revision was published (0: not warmed, or remote)."
    )
    owned_by: str = "hflambda"
    task: str
    repo: str
    revision: str | None = Field(None, description="Live revision in the store, if any.")
    ready: bool
    loaded: bool
    reason: str | None = Field(None, description="Why the model is not ready.")


class ModelList(BaseModel):
    """``GET /v1/models`` (OpenAI list shape, with readiness)."""

    object: Literal["list"] = "list"
    data: list[ModelState]


class Health(BaseModel):
    """``GET /health``: the process is up; per-model readiness is in /v1/models."""

    status: Literal["ok"] = "ok"
    models_ready: int
    models_total: int


# --- embeddings (OpenAI-compatible) ------------------------------------------------------

Text = Annotated[str, Field(min_length=1)]
TextList = Annotated[
    list[Text], Field(min_length=1, description="At most HFLAMBDA_MAX_BATCH (default 256) texts.")
]
MAX_EMBEDDING_INPUTS = 2048
"""Most texts one ``POST /v1/embeddings`` takes (OpenAI's limit), when the response fits Lambda's 6 MB."""

TOKEN_IDS_MESSAGE = (
    "input holds token ids; this server embeds text only, and token ids made for OpenAI's models (tiktoken) "
    "are not this model's token ids, so they cannot be turned back into text soundly. Send the texts. "
    "LangChain's OpenAIEmbeddings sends token ids by default: pass check_embedding_ctx_length=False"
)


class EmbeddingRequest(BaseModel):
    """OpenAI ``/v1/embeddings`` request; ``model`` is a registry alias."""

    model_config = ConfigDict(extra="ignore")

    input: Text | list[Text] = Field(
        description=f"A text or a list of up to {MAX_EMBEDDING_INPUTS} texts (non-empty); token-id arrays are refused (400)."
    )
    model: str = Field(description="Registry alias of an embeddings model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0, description="Accepted only if equal to the model's size.")
    user: str | None = None
    truncate: bool = Field(
        False, description="Truncate texts over the model's token limit instead of rejecting them."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: object) -> object:
        if _token_ids(value):
            raise BadInput(TOKEN_IDS_MESSAGE, field="input")
        return check_texts(value, allow_single=True)


def _token_ids(value: object) -> bool:
    """True for OpenAI's token-id inputs: a list of ints, or a list of lists of ints."""
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    return (isinstance(first, int) and not isinstance(first, bool)) or (
        isinstance(first, list) and bool(first) and isinstance(first[0], int)
    )


def check_texts(value: object, *, allow_single: bool = False) -> object:
    """One clear message for every malformed text input (instead of a union's two)."""
    shape = (
        "a non-empty string or a non-empty list of non-empty strings"
        if allow_single
        else "a non-empty list of non-empty strings"
    )
    if isinstance(value, str):
        if not allow_single:
            raise ValueError(f"must be {shape}, got a string")
        if not value:
            raise ValueError("must not be an empty string")
        return value
    if not isinstance(value, list):
        raise ValueError(f"must be {shape}, got {type(value).__name__}")
    if not value:
        raise ValueError("must not be an empty list")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index} must be a string, got {type(item).__name__}")
        if not item:
            raise ValueError(f"item {index} is an empty string")
    return value


class EmbeddingItem(BaseModel):
    """One vector (a base64 string of little-endian float32 when asked)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Token counts (completion tokens only for generation)."""

    prompt_tokens: int
    total_tokens: int
    completion_tokens: int | None = None


class EmbeddingUsage(BaseModel):
    """Input tokens (embeddings have no completion tokens)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """OpenAI ``/v1/embeddings`` response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


# --- generic predict route ---------------------------------------------------------------


class PredictRequest(BaseModel):
    """``POST /v1/models/{alias}/predict``: task-dispatched inputs."""

    inputs: TextList = Field(description="Texts to run through the model (non-empty).")
    top_k: int | None = Field(1, ge=1, description="Classification: labels per input (null: all).")
    truncate: bool = Field(
        False, description="Truncate texts over the model's token limit instead of rejecting them."
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _texts(cls, value: object) -> object:
        return check_texts(value)


class LabelScore(BaseModel):
    """One label with its probability."""

    label: str
    score: float


class ClassificationOutput(BaseModel):
    """Text classification: per input, labels sorted by score."""

    task: Literal["text-classification"] = "text-classification"
    model: str
    revision: str
    predictions: list[list[LabelScore]]


class EmbeddingOutput(BaseModel):
    """Embeddings: per input, an L2-normalised vector."""

    task: Literal["embeddings"] = "embeddings"
    model: str
    revision: str
    dimensions: int
    embeddings: list[list[float]]


PredictResponse = Annotated[ClassificationOutput | EmbeddingOutput, Field(discriminator="task")]


# --- chat completions (OpenAI-compatible) ------------------------------------------------


class ChatContentPart(BaseModel):
    """A part of a message's ``content`` list (only text parts are supported; others are refused with 400)."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ToolCallFunction(BaseModel):
    """The function a tool call names, with its arguments as JSON text."""

    name: str
    arguments: str = "{}"


class ToolCallOut(BaseModel):
    """One tool call of an answer (``message.tool_calls``; also accepted in assistant turns)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessageIn(BaseModel):
    """One message of the conversation; ``developer`` is treated as ``system``."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ChatContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallOut] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    """A function the model may call; ``parameters`` is a JSON Schema (bounded like json_schema)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    """``tools[i]``: only function tools exist."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoiceFunction(BaseModel):
    """The tool a named ``tool_choice`` forces."""

    name: str


class NamedToolChoice(BaseModel):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"]
    function: NamedToolChoiceFunction


class StreamOptions(BaseModel):
    """``stream_options``: a last chunk with ``usage`` when ``include_usage``."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None
    include_obfuscation: bool | None = Field(
        None, description="Accepted; no obfuscation is added (a local server)."
    )


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the answer must validate against."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(
        alias="schema", description="A JSON Schema; the answer is validated against it."
    )
    strict: bool | None = None


class ResponseFormatText(BaseModel):
    """Free text (the default)."""

    type: Literal["text"]


class ResponseFormatJsonObject(BaseModel):
    """Any JSON object."""

    type: Literal["json_object"]


class ResponseFormatJsonSchema(BaseModel):
    """JSON that validates against ``json_schema.schema``."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormatIn = Annotated[
    ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema, Field(discriminator="type")
]

INT64 = 2**63
# OpenAI parameters accepted at their neutral value only (anything else is refused with a
# 400 naming the parameter): what each would need that this server does not do.
NEUTRAL_PARAMETERS: dict[str, tuple[tuple[object, ...], str]] = {
    "frequency_penalty": ((0, 0.0), "frequency penalties are not supported"),
    "presence_penalty": ((0, 0.0), "presence penalties are not supported"),
    "logprobs": ((False,), "log probabilities are not returned"),
    "top_logprobs": ((0,), "log probabilities are not returned"),
    "logit_bias": (({},), "logit bias is not supported"),
    "store": ((False,), "completions are not stored"),
    "service_tier": (("auto", "default"), "there is one service tier"),
    "modalities": ((["text"],), "only text output exists"),
}
# OpenAI parameters with no meaning here: refused whenever set (not null)
UNSUPPORTED_PARAMETERS: dict[str, str] = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "these models have no reasoning setting",
    "verbosity": "these models have no verbosity setting",
    "web_search_options": "web search is not supported",
    "functions": "the deprecated functions API is not supported; send tools",
    "function_call": "the deprecated functions API is not supported; send tool_choice",
    "prompt_cache_key": "there is no prompt cache",
    "prompt_cache_retention": "there is no prompt cache",
    "prompt_cache_options": "there is no prompt cache",
    "moderation": "moderation is not supported",
}
# identifiers OpenAI records for abuse monitoring and metadata: accepted, logged, no effect on the answer
ACCEPTED_IDENTIFIERS = ("user", "safety_identifier", "metadata")


class ChatCompletionRequest(BaseModel):
    """OpenAI ``/v1/chat/completions`` request; ``model`` is a registry alias.

    Every OpenAI parameter is honoured or refused with a 400 naming it; unknown fields are
    refused the same way (nothing is silently ignored).
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        description="Registry alias of a text-generation model; its fallbacks answer if it cannot."
    )
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: float | None = Field(
        None, ge=0, le=2, description="0: greedy. Default 1.0 (sampling), as OpenAI."
    )
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(
        None, gt=0, description="Most tokens to generate (capped by the model's max_output_tokens)."
    )
    max_completion_tokens: int | None = Field(
        None, gt=0, description="Newer name of max_tokens; wins when both are set."
    )
    stop: str | list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="Up to 4 stop sequences (free text only)."
    )
    seed: int | None = Field(None, ge=-INT64, lt=INT64, description="Sampling seed (64-bit).")
    response_format: ResponseFormatIn | None = None
    stream: bool | None = Field(
        False, description="Server-sent events (chat.completion.chunk), ending with data: [DONE]."
    )
    stream_options: StreamOptions | None = None
    n: int | None = Field(1, ge=1, description="Only 1 choice is supported.")
    tools: list[ToolDefinition] | None = Field(None, description="Functions the model may call (at most 64).")
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="Default true: up to 4 calls in one answer.")
    user: str | None = None
    safety_identifier: str | None = None
    metadata: dict[str, str] | None = None


class ChatCompletionMessage(BaseModel):
    """The answer: text, or (``finish_reason: "tool_calls"``) tool calls with ``content`` null."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChatChoice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class ChatUsage(BaseModel):
    """Token counts of the attempt that answered."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatAttempt(BaseModel):
    """One model tried on the way to the answer."""

    model: str
    ok: bool
    reason: str | None = Field(
        None, description="Why it failed: '<trigger>: <detail>', e.g. 'rate_limited: ...'."
    )
    seconds: float


class ChatTrace(BaseModel):
    """hflambda's extension: every attempt of the fallback chain and the engine that answered."""

    attempts: list[ChatAttempt]
    engine: str


class ChatCompletionResponse(BaseModel):
    """OpenAI ``chat.completion``; ``model`` is the alias that answered (a fallback, maybe)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    system_fingerprint: str | None = None
    hflambda: ChatTrace


# --- documents and search (index queue, vector store) ------------------------------------

MAX_DOCUMENTS_PER_REQUEST = 100
"""Most documents one ``POST /v1/documents`` accepts (more: 413)."""

FilterScalar = str | int | float | bool | None


class DocumentIn(BaseModel):
    """A document to index for the caller: id (unique per caller), text, JSON metadata."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1,
        max_length=512,
        description="Document id, unique per caller; re-sending it replaces the document.",
    )
    text: str = Field(
        min_length=1, pattern=r"\S", description="Text to embed (long texts are chunked by tokens)."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON object kept with the document; scalar values (and lists of them) can be filtered on in search.",
    )


class DocumentsRequest(BaseModel):
    """``POST /v1/documents``: documents to index (queued; searchable once the index function ran).

    Unknown fields (a ``user_id``, say) are ignored: documents always belong to the caller's ``sub``.
    """

    documents: list[DocumentIn] = Field(
        min_length=1, description=f"1 to {MAX_DOCUMENTS_PER_REQUEST} documents (more: 413)."
    )


class DocumentStatus(BaseModel):
    """What happened to one document of the request."""

    id: str
    status: Literal["queued", "failed"]
    message_id: str | None = Field(None, description="SQS message id when queued.")
    error: str | None = Field(None, description="Why SQS did not accept it: '<code>: <message>'.")


class DocumentsAccepted(BaseModel):
    """202: per document, queued or failed (failed ones can be re-sent)."""

    queued: int
    failed: int
    documents: list[DocumentStatus]


class SearchRequest(BaseModel):
    """``POST /v1/search``: semantic search within the caller's own documents.

    Unknown fields (a ``user_id``, say) are ignored: the scope is always the caller's ``sub``.
    """

    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=8192, pattern=r"\S", description="What to look for.")
    top_k: int = Field(10, ge=1, le=100, description="Documents to return (1-100).")
    filter: dict[str, FilterScalar | list[FilterScalar]] | None = Field(
        None,
        description="Metadata equality filter: every key must match; a list value means any of them; "
        "a document whose metadata value is a list matches when the list contains the value.",
    )


class SearchResult(BaseModel):
    """One matching document, represented by its best-matching chunk."""

    id: str = Field(description="Document id.")
    score: float = Field(description="Cosine similarity of the query and the chunk (higher is closer).")
    text: str = Field(description="The best-matching chunk's text.")
    chunk: int
    start: int = Field(description="Chunk start offset in the document text (characters).")
    end: int = Field(description="Chunk end offset (exclusive).")
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    """Results, best first, from vectors of the live embedding model revision only."""

    object: Literal["list"] = "list"
    model: str
    revision: str
    data: list[SearchResult]

"""HTTP request/response types of the predict API, in one place (they shape the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# --- errors ---------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """One error: stable ``type``, a message saying what to do, the offending ``param``."""

    type: str = Field(description="Stable error code, e.g. model_not_ready, invalid_token.")
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

class EmbeddingRequest(BaseModel):
    """OpenAI ``/v1/embeddings`` request; ``model`` is a registry alias."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(description="A text or a list of texts (non-empty).")
    model: str = Field(description="Registry alias of an embeddings model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0, description="Accepted only if equal to the model's size.")
    user: str | None = None
    truncate: bool = Field(False, description="Truncate texts over the model's token limit instead of rejecting them.")

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: object) -> object:
        return check_texts(value, allow_single=True)


def check_texts(value: object, *, allow_single: bool = False) -> object:
    """One clear message for every malformed text input (instead of a union's two)."""
    shape = "a non-empty string or a non-empty list of non-empty strings" if allow_single else "a non-empty list of non-empty strings"
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

    inputs: list[str] = Field(description="Texts to run through the model (non-empty).")
    top_k: int | None = Field(1, ge=1, description="Classification: labels per input (null: all).")
    truncate: bool = Field(False, description="Truncate texts over the model's token limit instead of rejecting them.")

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

"""The one place that reads the environment: every setting is ``HFLAMBDA_<FIELD>``.

CDK builds each function's environment from these field names (see ``env_name``), so a
renamed setting breaks ``cdk synth`` instead of production.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ENV_PREFIX", "Settings", "env_name", "get_settings"]

ENV_PREFIX = "HFLAMBDA_"


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (raises KeyError for an unknown field)."""
    if field not in Settings.model_fields:
        raise KeyError(f"Settings has no field {field!r}")
    return f"{ENV_PREFIX}{field.upper()}"


class Settings(BaseSettings):
    """Every knob hflambda reads from the environment, with its default."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- model store and registry -------------------------------------------------------
    model_store: Path = Field(
        Path(".hflambda/models"),
        description="Root of the model store (EFS mount /mnt/models in Lambda).",
    )
    registry: Path = Field(Path("models.toml"), description="Path to the registry TOML file.")
    profile: str = Field(
        "local",
        description="Registry profile whose source overrides apply ('' for none; CDK sets 'aws').",
    )
    # --- warmup -------------------------------------------------------------------------
    hf_token_secret: str | None = Field(
        None, description="Secrets Manager name/ARN of the Hugging Face token (warmup only)."
    )
    hf_endpoint: str | None = Field(
        None, description="Hugging Face Hub endpoint (default: HF_ENDPOINT or huggingface.co)."
    )
    secret_max_age: int = Field(300, description="Seconds a secret read through Powertools stays cached.")
    warmup_reserve_seconds: int = Field(
        60, description="Warmup starts no new model when less than this time remains."
    )
    gc_grace_seconds: int = Field(86400, description="Age after which a non-current revision is deleted.")
    lock_lease_seconds: int = Field(
        900, description="Lease of an alias lock; a lock older than this is stale."
    )
    # --- serving ------------------------------------------------------------------------
    model_memory_budget_mb: int = Field(
        0, description="Memory budget for loaded models in MB (0: 60% of the function memory)."
    )
    ort_threads: int = Field(
        0, description="onnxruntime intra-op threads (0: the CPUs this process may use)."
    )
    ort_mode: Literal["latency", "throughput"] = Field(
        "latency",
        description=(
            "How encoder models use the CPUs: latency (one run at a time on every CPU; predict) or "
            "throughput (one-CPU runs over a call's length buckets, as many at once as there are CPUs; "
            "the index function)."
        ),
    )
    max_batch: int = Field(
        256,
        description="Most inputs of one /v1/models/{alias}/predict request (/v1/embeddings: OpenAI's 2,048, within 6 MB).",
    )
    max_body_bytes: int = Field(1_048_576, description="Largest request body accepted by the predict API.")
    predict_memory_mb: int = Field(
        3008,
        gt=0,
        description="Memory of the predict function in MB; `hflambda check` holds local model estimates to it.",
    )
    chat_budget_seconds: float = Field(
        27.0,
        gt=0,
        description="Time one chat completion may spend across its fallback chain (API Gateway cuts at 30 s).",
    )
    index_queue_url: str | None = Field(None, description="SQS index queue URL.")
    dlq_url: str | None = Field(
        None, description="The index queue's DLQ URL (default: read from the queue's RedrivePolicy)."
    )
    vector_backend: Literal["local", "aws"] = Field(
        "local",
        description="Vector store: local (LanceDB in HFLAMBDA_VECTOR_URI) or aws (S3 Vectors + DynamoDB).",
    )
    vector_uri: str = Field(".hflambda/vectors", description="LanceDB folder of the local vector backend.")
    vector_bucket: str | None = Field(None, description="S3 Vectors bucket name (aws vector backend).")
    vector_index: str | None = Field(
        None,
        description="S3 Vectors index: its ARN, or its name in HFLAMBDA_VECTOR_BUCKET (aws vector backend).",
    )
    vector_table: str | None = Field(
        None, description="DynamoDB table of the document catalogue and failure records (aws vector backend)."
    )
    document_max_chars: int = Field(
        100_000, gt=0, description="Longest document text accepted (characters; more: 413)."
    )
    document_max_tokens: int = Field(
        25_000,
        gt=0,
        description="Most tokens of one document's text (more: 413 at the API, the record fails at indexing).",
    )
    document_max_chunks: int = Field(
        160, gt=0, description="Most chunks one document may be split into (more: the record fails)."
    )
    document_max_metadata_bytes: int = Field(
        4_096, gt=0, description="Largest metadata of one document, as compact UTF-8 JSON (more: 413)."
    )
    document_max_filter_bytes: int = Field(
        1_536,
        gt=0,
        description="Largest filterable part of one document's metadata (its key=value terms; more: 413).",
    )
    index_batch_max_chunks: int = Field(
        4_000,
        gt=0,
        description="Most chunks one index invocation embeds (its memory budget); later records are redelivered.",
    )
    index_time_margin_seconds: float = Field(
        10.0,
        ge=0,
        description="Time an index invocation keeps in reserve before its timeout; records it cannot finish are redelivered.",
    )
    chunk_tokens: int = Field(200, description="Tokens per indexed chunk.")
    chunk_overlap: int = Field(40, description="Tokens shared by neighbouring chunks.")
    index_embed_group: int = Field(
        128, description="Most chunks the index function embeds in one call (bounds memory per batch)."
    )
    vector_index_min_rows: int = Field(
        50_000, description="Chunk rows at which maintenance builds the ANN index (below: exact search)."
    )
    vector_keep_versions_minutes: int = Field(
        60,
        description="Maintenance removes vector-table versions older than this (readers may still use newer ones).",
    )
    vector_optimize_every: int = Field(
        50,
        description="A writer compacts the vector tables after this many of its batches (0: only scheduled maintenance).",
    )
    # --- auth ---------------------------------------------------------------------------
    auth_issuer: str | None = Field(
        None, description="JWT issuer (Clerk Frontend API URL). Unset: protected routes 401."
    )
    auth_audience: str | None = Field(None, description="Required JWT audience (aud).")
    auth_jwks_url: str | None = Field(
        None, description="JWKS URL (default: issuer + /.well-known/jwks.json)."
    )
    auth_authorized_parties: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma list of allowed azp values (checked when set)."
    )

    @field_validator("auth_authorized_parties", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def jwks_url(self) -> str | None:
        """The JWKS URL to fetch keys from, derived from the issuer when not set."""
        if self.auth_jwks_url:
            return self.auth_jwks_url
        if self.auth_issuer:
            return self.auth_issuer.rstrip("/") + "/.well-known/jwks.json"
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

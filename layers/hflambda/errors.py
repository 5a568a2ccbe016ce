"""Every error hflambda raises on purpose, defined once.

Each carries a ``status`` (the HTTP status the predict API maps it to, in one place:
``functions/predict/errors.py``) and a ``code`` (a stable machine-readable name). Messages
say what went wrong, where, and what to do.

The error-module story: every error a client can receive is a type in this module, or a
narrower subclass that keeps its base's status and code (``vectors.FilterInvalid`` is a
``BadInput``); a subpackage may re-export one (``vectors.VectorStoreNotConfigured``). A
subpackage has an ``exceptions.py`` only for errors that never reach a client by
themselves: ``hflambda.generation.exceptions`` (one fallback attempt's failure, which the
chain folds into ``FallbackExhausted``; a remote model's warmup check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "AuthError",
    "AuthNotConfigured",
    "AuthUnavailable",
    "BadInput",
    "ContextLengthExceeded",
    "ExportFailed",
    "FallbackExhausted",
    "HflambdaError",
    "HubAccessDenied",
    "HubNotFound",
    "HubRateLimited",
    "LockHeld",
    "ModelNotFound",
    "ModelNotReady",
    "ParityFailed",
    "PayloadTooLarge",
    "QueueNotConfigured",
    "RegistryError",
    "SecretInvalid",
    "SecretMissing",
    "SourceChanged",
    "SourceError",
    "StoreCorrupt",
    "StoreUnreadable",
    "UpstreamError",
    "VectorStoreNotConfigured",
]


class HflambdaError(Exception):
    """Base of every deliberate hflambda error."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class BadInput(HflambdaError):
    """A request the caller can fix (names the field)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class PayloadTooLarge(BadInput):
    """A body or batch over a documented limit."""

    status = 413
    code = "payload_too_large"


class ModelNotFound(HflambdaError):
    """An alias the registry does not know; lists the known ones."""

    status = 404
    code = "model_not_found"

    def __init__(self, alias: str, known: list[str], *, task: str | None = None) -> None:
        what = f"a {task} model" if task else "a model"
        if task and task[0] in "aeiou":
            what = f"an {task} model"
        super().__init__(
            f"Model {alias!r} is not {what} in the registry. Known: {', '.join(sorted(known)) or 'none'}.",
            alias=alias,
            known=sorted(known),
        )
        self.alias = alias


class ModelNotReady(HflambdaError):
    """A registry model that the store cannot serve (yet): not warmed, incomplete, corrupt."""

    status = 503
    code = "model_not_ready"
    retry_after = 60

    def __init__(self, alias: str, reason: str) -> None:
        super().__init__(f"Model {alias!r} is not ready: {reason}", alias=alias, reason=reason)
        self.alias = alias
        self.reason = reason


class StoreCorrupt(ModelNotReady):
    """A published revision whose files do not match its manifest."""

    code = "model_store_corrupt"


class StoreUnreadable(ModelNotReady):
    """The model store itself cannot be read (an unmounted, misconfigured or unreadable folder)."""

    code = "model_store_unreadable"

    def __init__(self, alias: str, path: Path, error: OSError) -> None:
        super().__init__(
            alias,
            f"cannot read {path} ({error.strerror or type(error).__name__}): check that the model store "
            "(HFLAMBDA_MODEL_STORE) is mounted and readable by this function",
        )


class RegistryError(HflambdaError):
    """The registry file is missing or has problems (each names alias and field)."""

    code = "registry_invalid"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message, problems=problems or [])
        self.problems = problems or []


class AuthError(HflambdaError):
    """A token that failed verification; ``description`` says which check."""

    status = 401
    code = "invalid_token"

    def __init__(self, description: str) -> None:
        super().__init__(f"Invalid bearer token: {description}")
        self.description = description


class AuthNotConfigured(AuthError):
    """No issuer configured: protected routes refuse every request."""

    code = "auth_not_configured"

    def __init__(self) -> None:
        super().__init__("authentication is not configured (set HFLAMBDA_AUTH_ISSUER)")
        self.message = "Authentication is not configured on this server: set HFLAMBDA_AUTH_ISSUER (and HFLAMBDA_AUTH_AUDIENCE)."


class AuthUnavailable(AuthError):
    """The JWKS could not be fetched: fail closed."""

    status = 503
    code = "auth_unavailable"


class QueueNotConfigured(HflambdaError):
    """Document routes need HFLAMBDA_INDEX_QUEUE_URL."""

    status = 503
    code = "queue_not_configured"


class VectorStoreNotConfigured(HflambdaError):
    """The aws vector backend is selected without its bucket, index or table."""

    status = 503
    code = "vector_store_not_configured"


class UpstreamError(HflambdaError):
    """A dependency (SQS, S3, a provider) failed in a way the caller may retry."""

    status = 502
    code = "upstream_error"


class FallbackExhausted(HflambdaError):
    """Every model of a generation fallback chain failed; lists each attempt."""

    code = "fallback_exhausted"

    def __init__(self, attempts: list[tuple[str, str]], status: int = 502) -> None:
        lines = "\n".join(f"- {alias}: {reason}" for alias, reason in attempts)
        super().__init__(
            f"No model in the chain could answer:\n{lines}",
            attempts=[{"model": a, "reason": r} for a, r in attempts],
        )
        self.status = status
        self.attempts = attempts


class ContextLengthExceeded(FallbackExhausted):
    """The prompt (with max_tokens) fits no model of the chain: the caller must shorten it (400, like OpenAI)."""

    code = "context_length_exceeded"

    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        super().__init__(attempts, status=400)
        self.message = (
            "The prompt is longer than the context of every model in the chain; shorten the messages or lower max_tokens:\n"
            + "\n".join(f"- {alias}: {reason}" for alias, reason in attempts)
        )
        self.field = "messages"


# --- warmup side ------------------------------------------------------------------------


class SecretMissing(HflambdaError):
    """The secret named by HFLAMBDA_HF_TOKEN_SECRET does not exist or cannot be read."""

    code = "secret_missing"


class SecretInvalid(HflambdaError):
    """The secret exists but holds no usable Hugging Face token."""

    code = "secret_invalid"


class SourceError(HflambdaError):
    """A model source failed (download, listing, missing files)."""

    code = "source_error"


class SourceChanged(SourceError):
    """A packaged source's files no longer match the sha256 pinned in the registry."""

    code = "source_changed"


class HubAccessDenied(SourceError):
    """Token rejected, or no access to a private or gated repo."""

    code = "hub_access_denied"


class HubNotFound(SourceError):
    """Repo or revision does not exist on the Hub."""

    code = "hub_not_found"


class HubRateLimited(SourceError):
    """Still rate limited after the bounded retries."""

    code = "hub_rate_limited"


class ExportFailed(HflambdaError):
    """The model could not be exported to ONNX."""

    code = "export_failed"


class ParityFailed(HflambdaError):
    """The exported model disagrees with the original beyond tolerance."""

    code = "parity_failed"


class LockHeld(HflambdaError):
    """Another warmup holds the alias lock."""

    code = "lock_held"

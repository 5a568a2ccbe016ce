"""Deployment settings, read from CDK context with defaults that synthesize as they are.

Set any of them with ``cdk deploy -c key=value`` (strings are parsed: ``-c
auth_audience=a,b``) or in ``cdk.json`` under ``"context"``. ``docs/deploy.md`` has the
table; a test keeps that table and ``SETTINGS`` in step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from constructs import Node

REPO_ROOT = Path(__file__).resolve().parent.parent

NatMode = Literal["gateway", "instance", "none"]
ArchitectureName = Literal["x86_64", "arm64"]

# Placeholder issuer: synthesizes, but the app warns at synth and the API rejects every token
# until it is set to the Clerk Frontend API URL.
EXAMPLE_ISSUER = "https://clerk.example.com"


@dataclass(frozen=True, kw_only=True)
class DeployConfig:
    """Every deployment knob. Field name == context key."""

    stack_prefix: str = "Hflambda"
    account: str = ""  # empty: environment-agnostic stacks (no AWS lookups at synth)
    region: str = ""
    # --- auth (Clerk) ---------------------------------------------------------------------
    auth_issuer: str = EXAMPLE_ISSUER
    auth_audience: tuple[str, ...] = ("hflambda",)
    auth_authorized_parties: tuple[str, ...] = ()
    cors_allow_origins: tuple[str, ...] = ()
    # --- models -----------------------------------------------------------------------------
    registry: str = "models.toml"  # relative to the repo root, copied into every image
    hf_token_secret_name: str = ""  # empty: create the secret; else import it by name
    hf_endpoint: str = ""
    model_mirror_bucket: str = ""  # S3 mirror warmup may read (needed with nat_mode=none)
    # --- compute ----------------------------------------------------------------------------
    architecture: ArchitectureName = "x86_64"
    predict_memory_mb: int = 3008
    predict_timeout_s: int = 29  # API Gateway HTTP APIs give up at 30 s
    predict_provisioned_concurrency: int = 0
    index_memory_mb: int = 2048
    index_timeout_s: int = 120
    index_batch_size: int = 100  # one embedding call per up to 100 messages (needs a batching window >= 1 s)
    index_batching_window_s: int = 2
    index_max_concurrency: int = 5
    index_max_receive_count: int = 5
    # the S3 Vectors index dimension: the default embedding model's vector size (MiniLM: 384);
    # a model with another size needs a new index (dimension is fixed at creation)
    vector_dimensions: int = 384
    # 3008 MB: the most a new account's Lambda quota allows; more needs a quota increase
    warmup_memory_mb: int = 3008
    warmup_reserved_concurrency: int = 0  # 0: none (a new account can reserve nothing)
    warmup_ephemeral_mb: int = 10240
    warmup_schedule: str = "rate(1 day)"
    # --- network ----------------------------------------------------------------------------
    nat_mode: NatMode = "gateway"
    max_azs: int = 2
    # --- API, logs, alarms ------------------------------------------------------------------
    api_throttle_rate: int = 50
    api_throttle_burst: int = 100
    log_retention_days: int = 30
    predict_5xx_threshold: int = 5
    alarm_email: str = ""
    tracing: bool = False  # X-Ray active tracing; importing the X-Ray SDK adds cold-start time

    # Fixed by the design, not settings: warmup may take Lambda's maximum.
    WARMUP_TIMEOUT_S = 900
    # What a new account's Lambda quotas allow: memory per function (3008 MB), and the
    # unreserved concurrency Lambda always keeps (100 on a default account; new accounts
    # often have 10 in total, so nothing can be reserved or provisioned there).
    NEW_ACCOUNT_MAX_MEMORY_MB = 3008
    UNRESERVED_CONCURRENCY_FLOOR = 100
    VISIBILITY_FACTOR = 6  # SQS visibility timeout >= 6x the index function timeout

    def quota_warnings(self) -> list[str]:
        """What needs more than a new account's Lambda quotas, said before ``cdk deploy`` fails."""
        warnings = []
        for name in ("predict_memory_mb", "index_memory_mb", "warmup_memory_mb"):
            value = getattr(self, name)
            if value > self.NEW_ACCOUNT_MAX_MEMORY_MB:
                warnings.append(
                    f"{name}={value} exceeds the {self.NEW_ACCOUNT_MAX_MEMORY_MB} MB a new account's Lambda "
                    "allows: the Service stack fails unless the account's memory limit was raised "
                    "(docs/deploy.md#prerequisites)."
                )
        reserved = self.warmup_reserved_concurrency + self.predict_provisioned_concurrency
        if reserved:
            warnings.append(
                f"warmup_reserved_concurrency + predict_provisioned_concurrency = {reserved}: the account's "
                f"concurrency limit must be at least {reserved + self.UNRESERVED_CONCURRENCY_FLOOR} "
                f"(Lambda keeps {self.UNRESERVED_CONCURRENCY_FLOOR} unreserved on a default account; new "
                "accounts often have 10 in total). Check `aws lambda get-account-settings` "
                "(docs/deploy.md#prerequisites)."
            )
        return warnings

    @property
    def queue_visibility_s(self) -> int:
        return self.VISIBILITY_FACTOR * self.index_timeout_s

    @property
    def registry_path(self) -> Path:
        return (REPO_ROOT / self.registry).resolve()

    @property
    def registry_in_repo(self) -> str:
        """The registry file relative to the repo root (the Docker build context)."""
        return self.registry_path.relative_to(REPO_ROOT).as_posix()

    @classmethod
    def from_node(cls, node: Node) -> DeployConfig:
        """Read every field from CDK context, falling back to the defaults above."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = node.try_get_context(field.name)
            if raw is not None:
                values[field.name] = _coerce(field.name, field.type, raw)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the setting when a value cannot work in AWS."""
        problems: list[str] = []
        if self.nat_mode not in get_args(NatMode):
            problems.append(f"nat_mode must be one of {get_args(NatMode)}, got {self.nat_mode!r}")
        if self.architecture not in get_args(ArchitectureName):
            problems.append(
                f"architecture must be one of {get_args(ArchitectureName)}, got {self.architecture!r}"
            )
        if not 1 <= self.vector_dimensions <= 4096:
            problems.append(f"vector_dimensions must be 1-4096 (S3 Vectors), got {self.vector_dimensions}")
        if not self.auth_issuer.startswith("https://"):
            problems.append(f"auth_issuer must be an https URL, got {self.auth_issuer!r}")
        if not self.auth_audience:
            problems.append("auth_audience needs at least one value (API Gateway requires it)")
        if not 1 <= self.predict_timeout_s <= 29:
            problems.append("predict_timeout_s must be 1..29 (HTTP API integrations stop at 30 s)")
        if not 1 <= self.index_timeout_s <= 900:
            problems.append("index_timeout_s must be 1..900 (Lambda's limit)")
        if not 2 <= self.index_max_concurrency <= 1000:
            problems.append("index_max_concurrency must be 2..1000 (SQS event source limit)")
        if not 1 <= self.index_batch_size <= 10_000:
            problems.append("index_batch_size must be 1..10000")
        if self.index_batch_size > 10 and self.index_batching_window_s < 1:
            problems.append("index_batch_size > 10 needs index_batching_window_s >= 1")
        if not 0 <= self.index_batching_window_s <= 300:
            problems.append("index_batching_window_s must be 0..300")
        for name in ("predict_memory_mb", "index_memory_mb", "warmup_memory_mb"):
            if not 128 <= getattr(self, name) <= 10240:
                problems.append(f"{name} must be 128..10240")
        if not 512 <= self.warmup_ephemeral_mb <= 10240:
            problems.append("warmup_ephemeral_mb must be 512..10240")
        if self.predict_provisioned_concurrency < 0:
            problems.append("predict_provisioned_concurrency must be >= 0")
        if self.warmup_reserved_concurrency < 0:
            problems.append("warmup_reserved_concurrency must be >= 0 (0: none)")
        if not 1 <= self.max_azs <= 6:
            problems.append("max_azs must be 1..6")
        if not self.warmup_schedule.startswith(("rate(", "cron(")):
            problems.append("warmup_schedule must be an EventBridge rate(...) or cron(...) expression")
        try:
            inside = self.registry_path.is_relative_to(REPO_ROOT)
        except ValueError:  # pragma: no cover - different drive
            inside = False
        if not inside:
            problems.append(
                f"registry must be a file inside the repo (the image build context): {self.registry}"
            )
        elif not self.registry_path.is_file():
            problems.append(f"registry file not found: {self.registry_path}")
        if problems:
            raise ValueError("invalid CDK context:\n  " + "\n  ".join(problems))


def _coerce(name: str, annotation: Any, raw: Any) -> Any:
    """Context from ``-c k=v`` arrives as strings, from cdk.json as JSON values."""
    kind = str(annotation)
    if "tuple" in kind:
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if isinstance(raw, list | tuple):
            return tuple(str(part) for part in raw)
        raise ValueError(f"context {name}: expected a list or comma-separated string, got {raw!r}")
    if kind == "int":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"context {name}: expected an integer, got {raw!r}") from None
    return str(raw)


# CloudWatch Logs accepts only these retention periods (days -> aws_logs.RetentionDays name).
_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def log_retention(days: int) -> Any:
    """The ``aws_logs.RetentionDays`` for ``days``, rounded up to a period CloudWatch accepts."""
    from aws_cdk import aws_logs

    allowed = sorted(_RETENTION)
    chosen = next((d for d in allowed if d >= days), allowed[-1])
    return getattr(aws_logs.RetentionDays, _RETENTION[chosen])


SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(DeployConfig))

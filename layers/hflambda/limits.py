"""Limits that come from the model itself, not from the registry's defaults.

``memory_mb`` of a local generation model defaults to its exported size plus the engine's
working allowance (``generation_memory_mb``), recorded in the manifest's ``info.memory_mb``;
the registry field overrides it. Warmup refuses a model whose estimate does not fit the
predict function's model budget (``check_generation_memory``), naming alias and field.

``max_tokens`` (the longest input of an encoder) defaults to the model's own window: the
smaller of its position embeddings (``config.json`` ``max_position_embeddings``, less the
padding offset of RoBERTa-style models) and its tokenizer's ``model_max_length``. Warmup
derives it (``input_window``, ``effective_max_tokens``), refuses a registry value above it
with a ``RegistryError`` naming alias and field, and records both in the manifest's
``info`` (``max_tokens``, ``model_max_tokens``); serving reads them back
(``serving_max_tokens``). No heavy imports: serving uses this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hflambda.errors import RegistryError

if TYPE_CHECKING:
    from hflambda.registry import ModelSpec
    from hflambda.settings import Settings
    from hflambda.store import PublishedModel

__all__ = [
    "FALLBACK_MAX_TOKENS",
    "InputWindow",
    "check_generation_memory",
    "effective_max_tokens",
    "generation_memory_mb",
    "input_window",
    "model_memory_budget_mb",
    "serving_max_tokens",
]

# when a model states no window at all (and for manifests written before the window was recorded)
FALLBACK_MAX_TOKENS = 512
# position ids of these start after the padding index (pad_token_id + 1 = 2): 514 positions hold 512 tokens
_PADDING_OFFSET_TYPES = frozenset(
    {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "ibert", "data2vec-text"}
)
# tokenizers without a limit store a huge sentinel (int(1e30)); anything this large means "none"
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class InputWindow:
    """The longest input a model can take, and where that number comes from."""

    tokens: int | None
    because: str  # e.g. "config.json max_position_embeddings=512"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def input_window(model_dir: Path) -> InputWindow:
    """The model's input window from the files of a Hugging Face model folder."""
    candidates: list[tuple[int, str]] = []
    config = _read_json(model_dir / "config.json")
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0:
        offset = 2 if str(config.get("model_type")) in _PADDING_OFFSET_TYPES else 0
        note = f" less {offset} padding positions" if offset else ""
        candidates.append((positions - offset, f"config.json max_position_embeddings={positions}{note}"))
    length = _read_json(model_dir / "tokenizer_config.json").get("model_max_length")
    if isinstance(length, int | float) and not isinstance(length, bool) and 0 < length < _NO_LIMIT:
        candidates.append((int(length), f"tokenizer_config.json model_max_length={int(length)}"))
    if not candidates:
        return InputWindow(None, "the model states no input window")
    tokens, because = min(candidates)
    return InputWindow(tokens, because)


def effective_max_tokens(spec: ModelSpec, window: InputWindow) -> int:
    """The registry's ``max_tokens`` if it fits the window, else RegistryError; unset: the window."""
    if spec.max_tokens is None:
        return window.tokens or FALLBACK_MAX_TOKENS
    if window.tokens is not None and spec.max_tokens > window.tokens:
        message = (
            f"models.{spec.alias}.max_tokens: {spec.max_tokens} is more than the model takes: "
            f"{window.tokens} tokens ({window.because}). Lower it, or leave it out to use the model's window."
        )
        raise RegistryError(message, problems=[message])
    return spec.max_tokens


def serving_max_tokens(spec: ModelSpec, model: PublishedModel) -> int:
    """The input limit to serve ``model`` with: the registry's value or the manifest's, never
    more than the window warmup recorded."""
    info = model.manifest.info
    recorded = info.get("max_tokens")
    window = info.get("model_max_tokens") or info.get("max_position_embeddings")
    limit = spec.max_tokens or (int(recorded) if recorded else FALLBACK_MAX_TOKENS)
    return min(limit, int(window)) if window else limit


def generation_memory_mb(exported_bytes: int, overhead_bytes: int) -> int:
    """Resident estimate of a local generation model: its files plus the working allowance, in MB."""
    return math.ceil((exported_bytes + overhead_bytes) / (1 << 20))


def model_memory_budget_mb(settings: Settings) -> int:
    """The predict function's memory for loaded models (as the model pool computes it there)."""
    return settings.model_memory_budget_mb or settings.predict_memory_mb * 6 // 10


def check_generation_memory(spec: ModelSpec, derived_mb: int, settings: Settings) -> int:
    """The estimate that counts (the registry's override, else ``derived_mb``); RegistryError
    naming ``models.<alias>.memory_mb`` when it does not fit the predict budget."""
    estimate = spec.memory_mb or derived_mb
    budget = model_memory_budget_mb(settings)
    if estimate > budget:
        origin = "set in the registry" if spec.memory_mb else "derived from the exported files"
        message = (
            f"models.{spec.alias}.memory_mb: {estimate} MB ({origin}) does not fit the predict function's model "
            f"budget of {budget} MB (HFLAMBDA_PREDICT_MEMORY_MB={settings.predict_memory_mb}, 60% for models, or "
            "HFLAMBDA_MODEL_MEMORY_BUDGET_MB); raise the function memory or pick a smaller or more quantized model"
        )
        raise RegistryError(message, problems=[message])
    return estimate

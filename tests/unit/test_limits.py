"""Limits derived from the model: the input window from config and tokenizer, the memory
estimate of a generation model against the predict budget (warmup side, no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hflambda.errors import RegistryError
from hflambda.limits import (
    FALLBACK_MAX_TOKENS,
    InputWindow,
    check_generation_memory,
    effective_max_tokens,
    generation_memory_mb,
    input_window,
)
from hflambda.registry import ModelSpec, Task
from hflambda.settings import Settings


def folder(tmp_path: Path, config: dict[str, object], tokenizer: dict[str, object] | None = None) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    if tokenizer is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return tmp_path


@pytest.mark.parametrize(
    ("config", "tokenizer", "tokens", "because"),
    [
        (
            {"model_type": "bert", "max_position_embeddings": 512},
            {"model_max_length": 512},
            512,
            "max_position_embeddings=512",
        ),
        (
            {"model_type": "bert", "max_position_embeddings": 512},
            {"model_max_length": 256},
            256,
            "model_max_length=256",
        ),
        # RoBERTa-style position ids start after the padding index: 514 positions, 512 tokens
        (
            {"model_type": "xlm-roberta", "max_position_embeddings": 514},
            None,
            512,
            "less 2 padding positions",
        ),
        # "no limit" sentinel of tokenizers without one
        (
            {"model_type": "bert", "max_position_embeddings": 128},
            {"model_max_length": 1000000000000000019884624838656},
            128,
            "max_position_embeddings=128",
        ),
        ({"model_type": "t5"}, None, None, "states no input window"),
    ],
)
def test_input_window(
    tmp_path: Path,
    config: dict[str, object],
    tokenizer: dict[str, object] | None,
    tokens: int | None,
    because: str,
) -> None:
    window = input_window(folder(tmp_path, config, tokenizer))
    assert window.tokens == tokens and because in window.because


def spec(**fields: object) -> ModelSpec:
    return ModelSpec(alias="enc", repo="org/enc", task=Task.EMBEDDINGS, **fields)  # type: ignore[arg-type]


def test_effective_max_tokens() -> None:
    window = InputWindow(128, "config.json max_position_embeddings=128")
    assert effective_max_tokens(spec(), window) == 128
    assert effective_max_tokens(spec(max_tokens=64), window) == 64
    assert effective_max_tokens(spec(), InputWindow(None, "none")) == FALLBACK_MAX_TOKENS
    with pytest.raises(RegistryError) as refused:
        effective_max_tokens(spec(max_tokens=512), window)
    assert refused.value.code == "registry_invalid"
    assert str(refused.value).startswith(
        "models.enc.max_tokens: 512 is more than the model takes: 128 tokens"
    )
    assert refused.value.problems == [str(refused.value)]


def test_generation_memory_is_derived_and_the_field_overrides_it() -> None:
    chat = ModelSpec(alias="chat", repo="org/chat", task=Task.TEXT_GENERATION)
    derived = generation_memory_mb(300 << 20, 256 << 20)
    assert derived == 556
    small = Settings(predict_memory_mb=3008)  # budget 1804 MB
    assert check_generation_memory(chat, derived, small) == 556
    assert check_generation_memory(chat.model_copy(update={"memory_mb": 900}), derived, small) == 900
    with pytest.raises(
        RegistryError,
        match=r"models\.chat\.memory_mb: 2100 MB \(derived from the exported files\) does not fit .* 1804 MB",
    ):
        check_generation_memory(chat, 2100, small)
    with pytest.raises(RegistryError, match=r"set in the registry"):
        check_generation_memory(chat.model_copy(update={"memory_mb": 2500}), derived, small)
    assert check_generation_memory(chat, 2100, Settings(model_memory_budget_mb=4096)) == 2100

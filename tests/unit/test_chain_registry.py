"""Registry rules for generation models: limits, remote fields, memory estimates vs the function memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hflambda.cli import app
from hflambda.registry import check_registry, parse_registry

LOCAL = """
[models.chat]
repo = "org/tiny-chat"
task = "text-generation"
source = "file:///models/tiny-chat"
quantize = "int4"
memory_mb = {memory}
"""
REMOTE = """
[models.chat-remote]
repo = "org/big-chat"
task = "text-generation"
engine = "remote"
base_url = "https://router.example/v1"
provider_model = "org/big-chat"
api_key_secret = "hflambda/provider-key"
"""


def problems(text: str) -> list[str]:
    return parse_registry(text)[1]


def test_a_local_and_a_remote_model_with_fallbacks_are_clean() -> None:
    assert problems(LOCAL.format(memory=900) + 'fallbacks = ["chat-remote"]\n' + REMOTE) == []


def test_local_generation_memory_is_derived_by_warmup_unless_given() -> None:
    # warmup knows the exported size (manifest info.memory_mb); the field only overrides it
    text = LOCAL.replace("memory_mb = {memory}\n", "")
    assert problems(text) == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('base_url = "https://x/v1"\n', "models.chat.base_url"),
        ('provider_model = "x"\n', "models.chat.provider_model"),
        ('api_key_secret = "s"\n', "models.chat.api_key_secret"),
        ("context_tokens = 256\nmax_output_tokens = 256\n", "models.chat.max_output_tokens"),
    ],
)
def test_generation_field_rules(extra: str, field: str) -> None:
    found = problems(LOCAL.format(memory=900) + extra)
    assert [p.split(":")[0] for p in found] == [field], found


def test_remote_models_need_an_http_base_url_and_model_id() -> None:
    found = problems(
        REMOTE.replace("https://router.example/v1", "router.example/v1").replace(
            'provider_model = "org/big-chat"\n', ""
        )
    )
    assert sorted(p.split(":")[0] for p in found) == [
        "models.chat-remote.base_url",
        "models.chat-remote.provider_model",
    ]


def test_memory_estimate_is_checked_against_the_function_memory(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(LOCAL.format(memory=2500) + REMOTE)
    assert check_registry(path) == []  # without a budget nothing is compared
    (problem,) = check_registry(path, memory_budget_mb=1804, function_memory_mb=3008)
    assert problem.startswith("models.chat.memory_mb: 2500 MB does not fit")
    assert "1804 MB" in problem and "3008 MB" in problem
    assert check_registry(path, memory_budget_mb=6144, function_memory_mb=10240) == []


def test_check_command_uses_the_predict_memory_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hflambda.settings import get_settings

    path = tmp_path / "models.toml"
    path.write_text(LOCAL.format(memory=2500))
    runner = CliRunner()
    monkeypatch.setenv("HFLAMBDA_PREDICT_MEMORY_MB", "3008")
    monkeypatch.delenv("HFLAMBDA_MODEL_MEMORY_BUDGET_MB", raising=False)
    get_settings.cache_clear()
    try:
        small = runner.invoke(app, ["check", str(path), "--profile", ""])
        assert small.exit_code == 2, small.output
        assert "models.chat.memory_mb: 2500 MB does not fit" in small.output
        monkeypatch.setenv("HFLAMBDA_PREDICT_MEMORY_MB", "10240")
        get_settings.cache_clear()
        big = runner.invoke(app, ["check", str(path), "--profile", ""])
        assert big.exit_code == 0, big.output
    finally:
        get_settings.cache_clear()

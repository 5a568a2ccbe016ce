"""Registry defaults that follow the model: ``max_tokens`` is derived at warmup from the
model's own window (config ``max_position_embeddings``, tokenizer ``model_max_length``),
recorded in the manifest and enforced by serving; a registry value above the window is
refused naming alias and field (it used to end in a bare IndexError during parity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hflambda.engines import LOADERS
from hflambda.errors import BadInput
from hflambda.registry import Task, load_registry
from hflambda.settings import Settings
from hflambda.store import ModelStore
from hflambda.warmup import run_warmup
from hflambda.warmup.sources.devmodels import build_tiny_classifier
from tests.fixtures.hub import hub_registry

pytestmark = pytest.mark.integration

WINDOW = 32  # far below the 512 the registry used to assume, and below the parity texts
LONG_TEXT = "Serverless inference on AWS Lambda with ONNX Runtime loads in half a second " * 4


@pytest.fixture(scope="module")
def short_window_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier whose position embeddings stop at WINDOW tokens."""
    return build_tiny_classifier(tmp_path_factory.mktemp("short-window"), max_position_embeddings=WINDOW)


def _warm(tmp_path: Path, source: Path, **table: object) -> tuple[Settings, ModelStore, object]:
    registry = hub_registry(
        tmp_path / "models.toml",
        {
            "short": {
                "repo": "hflambda-tests/short-window",
                "source": f"file://{source}",
                "task": "text-classification",
                **table,
            }
        },
    )
    settings = Settings(model_store=tmp_path / "store", registry=registry, profile="")
    store = ModelStore(settings.model_store)
    (outcome,) = run_warmup(load_registry(registry, profile=""), store, settings).models
    return settings, store, outcome


def test_max_tokens_defaults_to_the_models_window_and_serving_enforces_it(
    short_window_model: Path, tmp_path: Path
) -> None:
    settings, store, outcome = _warm(tmp_path, short_window_model)
    assert outcome.status == "published", outcome  # type: ignore[attr-defined]
    model = store.resolve("short")
    assert model.manifest.info["max_tokens"] == WINDOW
    assert model.manifest.info["model_max_tokens"] == WINDOW
    spec = load_registry(settings.registry, profile="").get("short")
    assert spec.max_tokens is None  # the registry said nothing: the model decided
    classifier = LOADERS[Task.TEXT_CLASSIFICATION](spec, model, settings)
    assert classifier.max_tokens == WINDOW
    with pytest.raises(BadInput, match=f"accepts at most {WINDOW}"):
        classifier.classify([LONG_TEXT])
    (labels,) = classifier.classify([LONG_TEXT], truncate=True)
    assert labels and 0.0 <= labels[0][1] <= 1.0


def test_a_tokenizer_limit_below_the_position_window_wins(short_window_model: Path, tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "model"
    shutil.copytree(short_window_model, source)
    tokenizer_config = json.loads((source / "tokenizer_config.json").read_text())
    (source / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "model_max_length": 20}))
    _, store, outcome = _warm(tmp_path, source)
    assert outcome.status == "published", outcome  # type: ignore[attr-defined]
    assert store.resolve("short").manifest.info["max_tokens"] == 20


def test_a_registry_max_tokens_above_the_models_window_is_refused_naming_alias_and_field(
    short_window_model: Path, tmp_path: Path
) -> None:
    _, store, outcome = _warm(tmp_path, short_window_model, max_tokens=512)
    assert outcome.status == "failed" and outcome.error == "registry_invalid", outcome  # type: ignore[attr-defined]
    reason = outcome.reason or ""  # type: ignore[attr-defined]
    assert reason.startswith("models.short.max_tokens: 512"), reason
    assert f"{WINDOW} tokens" in reason and "max_position_embeddings" in reason
    assert store.current_name("short") is None


def test_a_registry_max_tokens_within_the_window_is_kept(short_window_model: Path, tmp_path: Path) -> None:
    settings, store, outcome = _warm(tmp_path, short_window_model, max_tokens=24)
    assert outcome.status == "published", outcome  # type: ignore[attr-defined]
    model = store.resolve("short")
    assert (model.manifest.info["max_tokens"], model.manifest.info["model_max_tokens"]) == (24, WINDOW)
    spec = load_registry(settings.registry, profile="").get("short")
    assert LOADERS[Task.TEXT_CLASSIFICATION](spec, model, settings).max_tokens == 24

"""Per-model outcomes from the fake Hub: an int8 text classifier with its label map and
parity, an architecture optimum cannot export (a per-model failure, not a crash), and
models deferred when the invocation has too little time left."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hflambda.registry import load_registry
from hflambda.store import ModelStore
from hflambda.warmup import run_warmup
from tests.fixtures.hub import HubWorld, classifier, fast_retry, hub_registry, hub_settings
from tests.fixtures.models import LABELS, minilm_path

pytestmark = pytest.mark.integration

FNET_REPO = "hflambda-tests/tiny-fnet-classifier"


@pytest.fixture(scope="module")
def fnet_revision(hub_world: HubWorld, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random FNet classifier: a real transformers architecture optimum has no ONNX config for."""
    import torch
    from transformers import FNetConfig, FNetForSequenceClassification

    torch.manual_seed(0)
    dest = tmp_path_factory.mktemp("tiny-fnet")
    config = FNetConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        intermediate_size=64,
        num_labels=2,
        max_position_embeddings=128,
    )
    FNetForSequenceClassification(config).save_pretrained(dest, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(minilm_path() / name, dest / name)
    return hub_world.hub.add_commit(FNET_REPO, dest)


def test_int8_classifier_and_an_unexportable_architecture(
    fake_hub: HubWorld, fnet_revision: str, tmp_path: Path
) -> None:
    registry = hub_registry(
        tmp_path / "models.toml",
        {
            "fnet": classifier(fnet_revision, repo=FNET_REPO),
            "classify-int8": classifier(fake_hub.rev_b, quantize="int8"),
        },
    )
    settings = hub_settings(tmp_path / "store", registry, fake_hub)
    result = run_warmup(
        load_registry(registry),
        ModelStore(settings.model_store),
        settings,
        source_options={"retry": fast_retry()},
    )
    by_alias = {m.alias: m for m in result.models}

    fnet = by_alias["fnet"]
    assert fnet.status == "failed" and fnet.error == "export_failed", fnet
    assert "fnet" in (fnet.reason or "") and FNET_REPO in (fnet.reason or "")
    assert fnet.live_revision is None
    assert not (tmp_path / "store" / "fnet").exists() or not list((tmp_path / "store" / "fnet").iterdir())

    int8 = by_alias["classify-int8"]
    assert int8.status == "published", int8
    model = ModelStore(settings.model_store).resolve("classify-int8", verify_hashes=True)
    assert model.manifest.export["quantize"] == "int8" and model.manifest.task == "text-classification"
    assert model.manifest.info["id2label"] == {str(k): v for k, v in LABELS.items()}
    assert model.manifest.parity and int8.parity == model.manifest.parity
    assert not list((tmp_path / "store" / ".staging").iterdir())


def test_too_little_time_defers_every_model_without_requests(fake_hub: HubWorld, tmp_path: Path) -> None:
    registry = hub_registry(
        tmp_path / "models.toml", {"a": classifier(fake_hub.rev_a), "b": classifier(fake_hub.rev_b)}
    )
    settings = hub_settings(tmp_path / "store", registry, fake_hub, warmup_reserve_seconds=60)
    result = run_warmup(
        load_registry(registry), ModelStore(settings.model_store), settings, remaining_seconds=lambda: 30.0
    )
    assert [(m.alias, m.status) for m in result.models] == [("a", "deferred"), ("b", "deferred")]
    assert all("next run" in (m.reason or "") for m in result.models)
    assert result.ok and fake_hub.hub.count() == 0

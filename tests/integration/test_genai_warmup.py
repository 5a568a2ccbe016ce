"""Warmup of a local generation model: the GenAI builder's output, parity figures and gates, source checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hflambda.errors import ExportFailed, ParityFailed
from hflambda.registry import ModelSpec, Task, load_registry
from hflambda.settings import Settings
from hflambda.store import ModelStore
from hflambda.warmup import ModelStatus, warm_one
from hflambda.warmup.genai import MIN_LOGITS_COSINE, build_genai_model, check_parity, compile_generation
from tests.fixtures.genai import GenaiWarmed

pytestmark = pytest.mark.integration


def tiny_spec(source: Path, **extra: Any) -> ModelSpec:
    return ModelSpec(
        alias="chat",
        repo="hflambda-tests/tiny-qwen2",
        task=Task.TEXT_GENERATION,
        source=f"file://{source}",
        quantize="int4",
        memory_mb=64,
        **extra,
    )


def test_the_store_holds_a_genai_model_with_template_and_tokenizer(genai_warmed: GenaiWarmed) -> None:
    model = ModelStore(genai_warmed.store).resolve("chat")
    assert {
        "model.onnx",
        "model.onnx.data",
        "genai_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    } <= set(model.manifest.files)
    assert model.manifest.export["format"] == "onnxruntime-genai"
    assert model.manifest.export["builder"] == "onnxruntime-genai 0.15.2"
    assert model.manifest.export["precision"] == "int4"
    genai_config = json.loads((model.path / "genai_config.json").read_text())["model"]
    assert genai_config["type"] == "qwen2"
    assert genai_config["eos_token_id"] == model.manifest.info["eos_token_id"] is not None
    assert (model.path / "chat_template.jinja").read_text() == (
        genai_warmed.source_dir / "chat_template.jinja"
    ).read_text()


def test_memory_estimate_is_derived_from_the_exported_files(genai_warmed: GenaiWarmed) -> None:
    import math

    from hflambda.generation.local import OVERHEAD_BYTES

    assert load_registry(genai_warmed.registry).get("chat").memory_mb is None  # the registry gave none
    info = ModelStore(genai_warmed.store).resolve("chat").manifest.info
    assert info["memory_mb"] == math.ceil((info["bytes"] + OVERHEAD_BYTES) / (1 << 20))


def test_parity_figures_are_recorded(genai_warmed: GenaiWarmed) -> None:
    parity = ModelStore(genai_warmed.store).resolve("chat").manifest.parity
    assert parity["chat_template"] == "identical" and parity["tokenizer"] == "identical"
    assert parity["logits_min_cosine_required"] == MIN_LOGITS_COSINE["int4"]
    assert parity["logits_min_cosine"] >= MIN_LOGITS_COSINE["int4"]
    assert len(parity["greedy_prefix_agreement"]) == 2
    assert all(0 <= n <= parity["greedy_tokens"] for n in parity["greedy_prefix_agreement"])
    assert parity["guided_tokens"] > 0
    assert genai_warmed.result["timings"]["export_s"] > 0  # type: ignore[index]


def test_a_warm_model_is_not_rebuilt(genai_warmed: GenaiWarmed, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(genai_warmed.store, store)
    registry = load_registry(genai_warmed.registry)
    result = warm_one(
        registry.get("chat"),
        ModelStore(store),
        Settings(model_store=store),
        registry_dir=genai_warmed.registry.parent,
    )
    assert result.status == ModelStatus.CURRENT, result.model_dump_json()


def test_a_template_genai_renders_differently_fails_parity(genai_warmed: GenaiWarmed, tmp_path: Path) -> None:
    built = tmp_path / "built"
    shutil.copytree(ModelStore(genai_warmed.store).resolve("chat").path, built)
    template = (built / "chat_template.jinja").read_text()
    (built / "chat_template.jinja").write_text(
        template.replace("<|im_start|>assistant\\n", "<|im_start|>assistant:\\n")
    )
    with pytest.raises(ParityFailed, match="chat template renders differently"):
        check_parity(tiny_spec(genai_warmed.source_dir), genai_warmed.source_dir, built)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("eos", "has no eos_token_id"),
        ("decoder", "has no decoder"),
        ("template", "has no chat template"),
        ("tokenizer", "has no tokenizer.json"),
    ],
)
def test_sources_genai_cannot_serve_are_refused_before_building(
    genai_warmed: GenaiWarmed, tmp_path: Path, damage: str, message: str
) -> None:
    source = tmp_path / "source"
    shutil.copytree(genai_warmed.source_dir, source)
    if damage == "eos":
        config = json.loads((source / "config.json").read_text())
        config["eos_token_id"] = None
        (source / "config.json").write_text(json.dumps(config))
    elif damage == "decoder":
        tokenizer = json.loads((source / "tokenizer.json").read_text())
        tokenizer["decoder"] = None
        (source / "tokenizer.json").write_text(json.dumps(tokenizer))
    elif damage == "template":
        (source / "chat_template.jinja").unlink()
        config = json.loads((source / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (source / "tokenizer_config.json").write_text(json.dumps(config))
    else:
        (source / "tokenizer.json").unlink()
    with pytest.raises(ExportFailed, match=message):
        compile_generation(tiny_spec(source), source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_builder_failures_carry_the_builders_own_message(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(
        json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "no-such", "eos_token_id": 2})
    )
    with pytest.raises(ExportFailed, match=r"model builder failed \(exit \d+\):\n") as caught:
        build_genai_model(source, tmp_path / "out", "int4", timeout=300)
    assert len(str(caught.value).splitlines()) > 1


def test_logits_gate_uses_the_registry_threshold_when_set(genai_warmed: GenaiWarmed) -> None:
    built = ModelStore(genai_warmed.store).resolve("chat").path
    cosine = ModelStore(genai_warmed.store).resolve("chat").manifest.parity["logits_min_cosine"]
    assert cosine < 0.99999  # int4 moves the logits a little
    with pytest.raises(
        ParityFailed,
        match=r"next-token logits disagree with transformers: min cosine 0\.\d+ < 0\.99999 \(int4\)",
    ):
        check_parity(
            tiny_spec(genai_warmed.source_dir, parity_min_cosine=0.99999), genai_warmed.source_dir, built
        )

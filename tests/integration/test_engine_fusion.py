"""The engine that does less work: fused graphs decided at warmup (and recorded), length
buckets, session settings that fit Lambda, and refusal of a fused/int8 graph that drifts."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from hflambda import runtime
from hflambda.engines import onnx as engine
from hflambda.engines.onnx import OnnxEmbedder, buckets, session_options
from hflambda.errors import ParityFailed
from hflambda.registry import ModelSpec, Task
from hflambda.store import Manifest, ModelStore, PublishedModel
from hflambda.warmup import export
from tests.fixtures.models import Warmed, minilm_path

pytestmark = pytest.mark.integration

SENTENCES = [
    "ok",
    "The quick brown fox jumps over the lazy dog.",
    "Lambda functions freeze between invocations, so background threads stall. " * 6,
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "A man is eating food.",
    "Serverless inference loads ONNX models from EFS in well under a second. " * 12,
]


@pytest.fixture(scope="module")
def unfused_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported exactly as warmup exports it, before fusion."""
    from optimum.exporters.onnx import main_export

    out = tmp_path_factory.mktemp("unfused")
    main_export(
        str(minilm_path()),
        output=out,
        task="feature-extraction",
        opset=export.OPSET,
        do_validation=False,
        local_files_only=True,
        library_name="transformers",
    )
    shutil.copy2(minilm_path() / "tokenizer.json", out / "tokenizer.json")
    return out


def _model(path: Path, alias: str = "unfused") -> PublishedModel:
    manifest = Manifest(
        alias=alias,
        repo="r",
        revision="x",
        source="",
        task="embeddings",
        info={"dimensions": 384, "pad_token_id": 0},
    )
    return PublishedModel(alias=alias, path=path, manifest=manifest)


def test_fusion_is_applied_and_recorded_in_the_manifest(warmed: Warmed) -> None:
    store = ModelStore(warmed.store)
    for alias in ("embed", "embed-int8"):
        model = store.resolve(alias)
        graph = model.manifest.info["graph"]
        assert model.manifest.export["fusion"] == "ort-transformers"
        assert graph["fused"] is True, graph
        assert (
            graph["ops"]["Attention"] == 6
            and graph["ops"]["SkipLayerNormalization"] == 12
            and graph["ops"]["BiasGelu"] == 6
        )
        # fused: basic passes only; quantized too: the extended ones fuse DynamicQuantizeMatMul
        assert graph["session_optimization"] == ("extended" if alias == "embed-int8" else "basic")
        assert OnnxEmbedder(model, max_tokens=256).session_level == graph["session_optimization"]
        ops = {
            n.op_type for n in onnx.load(str(model.file("model.onnx")), load_external_data=False).graph.node
        }
        assert ("QAttention" if alias == "embed-int8" else "Attention") in ops
    int8 = store.resolve("embed-int8").manifest.info["graph"]["int8_vs_fp32"]
    assert int8["mean_cosine"] >= 0.99 and int8["min_cosine"] >= 0.98, int8


def test_served_fused_embeddings_match_the_unfused_export(warmed: Warmed, unfused_dir: Path) -> None:
    fused = OnnxEmbedder(ModelStore(warmed.store).resolve("embed"), max_tokens=256).embed(SENTENCES)
    plain = OnnxEmbedder(_model(unfused_dir), max_tokens=256).embed(SENTENCES)
    assert ((fused * plain).sum(1)).min() >= 0.9999


def test_buckets_cover_every_input_once_and_bound_padding() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(10, 256) for _ in range(100)]
    groups = buckets(lengths, max_rows=32)
    assert sorted(i for g in groups for i in g) == list(range(100))
    assert len(groups) > 100 // 32  # mixed lengths: more, narrower buckets than fixed chunks
    for group in groups:
        widths = [lengths[i] for i in group]
        assert widths == sorted(widths) and len(group) <= 32
        padded = len(group) * max(widths)
        assert padded <= engine.BUCKET_MAX_TOKENS
        assert (
            padded - sum(widths) <= engine.BUCKET_MAX_PADDING * padded or len(group) <= engine.BUCKET_MIN_ROWS
        )
    assert buckets([26] * 32) == [list(range(32))]  # equal lengths: one batch, no padding


def test_bucketing_preserves_order_and_results(warmed: Warmed) -> None:
    model = OnnxEmbedder(ModelStore(warmed.store).resolve("embed"), max_tokens=256)
    rng = random.Random(5)
    texts = [" ".join(rng.choice(SENTENCES[1:]).split()[: rng.randint(1, 150)]) for _ in range(40)]
    together = model.embed(texts)
    alone = np.stack([model.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(model.embed(texts[::-1]), together[::-1], atol=1e-5)


def test_threads_are_the_cpus_the_function_really_has(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5, 6, 7})
    fake_sys = tmp_path / "sys"
    (fake_sys / "fs" / "cgroup").mkdir(parents=True)
    (fake_sys / "fs" / "cgroup" / "cpu.max").write_text("200000 100000\n")  # a 2-CPU quota on an 8-CPU host
    monkeypatch.setattr(runtime, "Path", lambda p: fake_sys / Path(p).relative_to("/sys"))
    assert runtime.available_cpus() == 2
    options = session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    (fake_sys / "fs" / "cgroup" / "cpu.max").write_text("max 100000\n")
    assert runtime.available_cpus() == 8
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _pid: {3})
    assert session_options().intra_op_num_threads == 1


def _perturbing_fuser(src: Path, dst: Path, config: dict[str, object]) -> dict[str, int]:
    """A 'fusion' that changes the answers: every float initializer scaled by 1.5."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 16:
            init.CopyFrom(numpy_helper.from_array((array * 1.5 + 0.1).astype(np.float32), init.name))
    onnx.save(model, str(dst))
    return {"Attention": 1}


def test_a_fused_graph_that_drifts_is_refused(
    tiny_classifier_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ModelSpec(alias="tiny", repo="dev/tiny", task=Task.TEXT_CLASSIFICATION, max_tokens=64)
    monkeypatch.setattr(export, "fuse_encoder", _perturbing_fuser)
    result = export.compile_encoder(spec, tiny_classifier_dir, tmp_path / "out")
    graph = result.info["graph"]
    assert graph["fused"] is False and graph["reason"].startswith("fused graph refused"), graph
    assert graph["session_optimization"] == "all"
    assert result.parity["argmax_agreement"] == 1.0  # the unfused export was served and checked


def test_an_int8_graph_outside_the_bounds_is_refused(
    tiny_classifier_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ModelSpec(
        alias="tiny-int8",
        repo="dev/tiny",
        task=Task.EMBEDDINGS,
        quantize="int8",
        max_tokens=64,
        parity_min_cosine=0.5,
        parity_mean_cosine=0.5,
    )
    monkeypatch.setattr(export, "INT8_MIN_COSINE", 1.0)
    with pytest.raises(ParityFailed, match="int8 graph refused: vs the fp32 export") as refused:
        export.compile_encoder(spec, tiny_classifier_dir, tmp_path / "out")
    assert refused.value.details["parity"]["int8_vs_fp32"]["min_threshold"] == 1.0


def test_truncation_keeps_the_closing_special_token(warmed: Warmed) -> None:
    model = OnnxEmbedder(ModelStore(warmed.store).resolve("embed"), max_tokens=256)
    long_text = "serverless inference " * 300
    cut = model.encode([long_text, "short"], truncate=True)
    assert len(cut[0].ids) == 256 and cut[0].tokens[0] == "[CLS]" and cut[0].tokens[-1] == "[SEP]"
    assert cut[1].tokens == ["[CLS]", "short", "[SEP]"]
    # what sentence-transformers embeds for the same text (it truncates to 256 the same way)
    manual = model.tokenizer.encode(long_text)
    ids = [*manual.ids[:255], manual.ids[-1]]
    feed = {
        "input_ids": np.asarray([ids]),
        "attention_mask": np.ones((1, 256), dtype=np.int64),
        "token_type_ids": np.zeros((1, 256), dtype=np.int64),
    }
    hidden = model.run({k: v for k, v in feed.items() if k in model.input_names})
    expected = hidden.mean(axis=1)[0]
    assert float(model.embed([long_text], truncate=True)[0] @ (expected / np.linalg.norm(expected))) >= 0.9999

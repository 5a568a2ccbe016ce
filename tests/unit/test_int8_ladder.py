"""The int8 ladder (warmup.export.quantize_checked): each recipe is really built on a tiny
two-layer MatMul graph (an FFN up/down pair plus a square projection); the cosine
measurement is scripted per recipe so the fall-through and the refusal are decided here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hflambda.errors import ParityFailed
from hflambda.registry import ModelSpec, Task
from hflambda.warmup import export

HIDDEN, INNER = 32, 128
CONFIG = {"hidden_size": HIDDEN, "intermediate_size": INNER}
SPEC = ModelSpec(alias="tiny-int8", repo="dev/tiny", task=Task.EMBEDDINGS, quantize="int8", max_tokens=16)


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    weights = {"w_proj": (HIDDEN, HIDDEN), "w_up": (HIDDEN, INNER), "w_down": (INNER, HIDDEN)}
    inits = [
        numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
        for name, shape in weights.items()
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w_proj"], ["h"], name="proj/MatMul"),
        helper.make_node("MatMul", ["h", "w_up"], ["u"], name="intermediate/dense/MatMul"),
        helper.make_node("MatMul", ["u", "w_down"], ["y"], name="output/dense/MatMul"),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "tiny",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", HIDDEN])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", HIDDEN])],
            inits,
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    path = tmp_path / "src" / "model.fused.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path))
    return path


def _script(monkeypatch: pytest.MonkeyPatch, cosines: dict[str, tuple[float, float]]) -> list[str]:
    """int8_cosines answers (min, mean) per recipe (read from the candidate's file name)."""
    measured: list[str] = []
    monkeypatch.setattr(
        export, "_graph_outputs", lambda *_a, **_k: np.ones((len(export.PARITY_TEXTS), HIDDEN))
    )

    def cosines_of(
        spec: ModelSpec, fp32: Path, int8: Path, tokenizer_file: Path, reference: Any = None
    ) -> np.ndarray:
        assert int8.is_file() and reference is not None
        recipe = int8.name.split(".", 1)[1].removesuffix(".onnx")
        measured.append(recipe)
        low, mean = cosines[recipe]
        rest = (len(export.PARITY_TEXTS) * mean - low) / (len(export.PARITY_TEXTS) - 1)
        return np.asarray([low] + [rest] * (len(export.PARITY_TEXTS) - 1))

    monkeypatch.setattr(export, "int8_cosines", cosines_of)
    return measured


def _ops(path: Path) -> dict[str, str]:
    return {
        n.name: n.op_type
        for n in onnx.load(str(path)).graph.node
        if n.name.endswith("MatMul") or n.op_type.startswith("MatMul")
    }


def test_ffn_matmuls_are_the_ones_with_the_intermediate_size(graph: Path) -> None:
    assert export.ffn_matmuls(graph, CONFIG) == ["intermediate/dense/MatMul", "output/dense/MatMul"]


def test_the_first_recipe_within_the_bounds_is_served(
    graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = _script(
        monkeypatch,
        {"dynamic-per-channel": (0.88, 0.906), "ffn-blockwise8": (0.996, 0.998), "blockwise8": (1.0, 1.0)},
    )
    dst = tmp_path / "out" / "model.onnx"
    dst.parent.mkdir()
    record = export.quantize_checked(
        SPEC, graph, dst, fused=False, config=CONFIG, tokenizer_file=tmp_path / "tokenizer.json"
    )
    assert measured == ["dynamic-per-channel", "ffn-blockwise8"]  # stops at the first pass
    assert (
        record["recipe"] == "ffn-blockwise8"
        and record["mean_cosine"] == 0.998
        and record["min_cosine"] == 0.996
    )
    assert [t["recipe"] for t in record["tried"]] == measured and record["tried"][0]["mean_cosine"] == 0.906
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model.onnx"]  # candidates cleaned up
    ops = _ops(dst)  # the served graph is the ffn-blockwise8 one: projection int8 dynamic, FFN blockwise
    assert "MatMulInteger" in ops.values() and list(ops.values()).count("MatMulNBits") == 2, ops
    x = np.random.default_rng(1).normal(size=(4, HIDDEN)).astype(np.float32)
    import onnxruntime as ort

    fp32 = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    int8 = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    cos = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1))
    assert cos.min() > 0.95, cos  # a real quantized graph of the same function


def test_a_model_that_passes_the_first_recipe_keeps_todays_graph(
    graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = _script(monkeypatch, {"dynamic-per-channel": (0.985, 0.991)})
    dst = tmp_path / "model.onnx"
    record = export.quantize_checked(
        SPEC, graph, dst, fused=False, config=CONFIG, tokenizer_file=tmp_path / "tokenizer.json"
    )
    assert measured == ["dynamic-per-channel"] and record["recipe"] == "dynamic-per-channel"
    assert set(_ops(dst).values()) == {"MatMulInteger"}


def test_all_recipes_missing_refuses_and_names_each(
    graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = _script(
        monkeypatch,
        {"dynamic-per-channel": (0.88, 0.906), "ffn-blockwise8": (0.97, 0.995), "blockwise8": (0.985, 0.989)},
    )
    dst = tmp_path / "model.onnx"
    with pytest.raises(ParityFailed, match="int8 graph refused: vs the fp32 export") as refused:
        export.quantize_checked(
            SPEC, graph, dst, fused=False, config=CONFIG, tokenizer_file=tmp_path / "tokenizer.json"
        )
    assert measured == list(export.INT8_RECIPES)
    message = str(refused.value)
    assert (
        "dynamic-per-channel: min 0.88000, mean 0.90600" in message
        and "ffn-blockwise8: min 0.97000" in message
        and "blockwise8: min 0.98500" in message
    )
    tried = refused.value.details["parity"]["int8_vs_fp32"]["tried"]
    assert (
        [t["recipe"] for t in tried] == measured
        and not dst.exists()
        and list(tmp_path.glob("model.*.onnx")) == []
    )


def test_a_recipe_that_does_not_apply_is_skipped(
    graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = _script(monkeypatch, {"dynamic-per-channel": (0.88, 0.906), "blockwise8": (0.999, 0.999)})
    record = export.quantize_checked(
        SPEC,
        graph,
        tmp_path / "model.onnx",
        fused=False,
        config={"hidden_size": HIDDEN},
        tokenizer_file=tmp_path / "t.json",
    )
    assert measured == ["dynamic-per-channel", "blockwise8"] and record["recipe"] == "blockwise8"
    assert record["tried"][1] == {"recipe": "ffn-blockwise8", "applies": False}
    assert set(_ops(tmp_path / "model.onnx").values()) == {"MatMulNBits"}


def test_a_classifier_is_served_on_the_first_recipe_without_the_cosine_gate(
    graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured = _script(monkeypatch, {})
    spec = SPEC.model_copy(update={"task": Task.TEXT_CLASSIFICATION})
    record = export.quantize_checked(
        spec, graph, tmp_path / "model.onnx", fused=False, config=CONFIG, tokenizer_file=tmp_path / "t.json"
    )
    assert (
        measured == [] and record["recipe"] == "dynamic-per-channel" and (tmp_path / "model.onnx").is_file()
    )

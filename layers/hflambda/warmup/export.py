"""Encoder export to ONNX with optimum-onnx, dynamic int8 quantization, and parity checks.

Heavy imports (torch, transformers, optimum) happen inside these functions only.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from hflambda.errors import ExportFailed, ParityFailed
from hflambda.limits import FALLBACK_MAX_TOKENS, effective_max_tokens, input_window
from hflambda.registry import ModelSpec, Task
from hflambda.warmup.types import CompileResult

__all__ = [
    "FUSION_MODEL_TYPES",
    "INT8_RECIPES",
    "PARITY_TEXTS",
    "compile_encoder",
    "fuse_encoder",
    "quantize_checked",
    "quantize_int8",
]

OPSET = 18
# fixed inputs for the parity check: short, long, punctuation, non-ASCII, repeated
PARITY_TEXTS = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on a stage in front of a small crowd.",
    "Pinned revisions and a single writer keep the Hub from rate limiting us.",
    "Café déjà vu: naïve résumé, 東京, and emoji 🙂 all tokenize differently.",
    "short",
    "Serverless inference on AWS Lambda with ONNX Runtime loads in half a second " * 4,
    "What is the capital of France? Paris is the capital of France.",
]
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
)


def quantize_int8(
    src: Path, dst: Path, *, fused: bool = False, nodes_to_exclude: list[str] | None = None
) -> None:
    """Dynamic int8, per-channel (FACTS.md: mean cosine 0.992 vs 0.957 per-tensor).

    An unfused graph: MatMul only. A fused one (quantized after fusion, which measured both
    faster and closer to fp32 than fusing a quantized graph): MatMul plus the fused
    Attention and EmbedLayerNormalization ops (QAttention, QEmbedLayerNormalization).
    ``nodes_to_exclude`` stay fp32 (the ladder's later recipes).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention", "EmbedLayerNormalization"] if fused else ["MatMul"]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=ops,
        nodes_to_exclude=nodes_to_exclude or [],
        # fused ops come from the com.microsoft domain, which ONNX shape inference cannot type
        extra_options={"DefaultTensorType": 1} if fused else {},
    )


def quantize_blockwise8(src: Path, dst: Path, *, nodes: list[str] | None = None) -> None:
    """Weight-only int8 in blocks of 128 along K (MatMulNBits, bits=8, symmetric) with
    accuracy_level 4: int8 compute whose activations get one scale per block, not one per
    tensor, so the outlier channels of MPNet's residual stream do not flatten the rest.
    ``nodes``: only these MatMuls (None: every MatMul with a constant weight)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=128, is_symmetric=True, accuracy_level=4, bits=8, op_types_to_quantize=("MatMul",)
    )
    quantizer = MatMulNBitsQuantizer(
        str(src),
        bits=8,
        block_size=128,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_include=nodes,
        algo_config=config,
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), False)


def ffn_matmuls(graph_file: Path, config: dict[str, Any]) -> list[str]:
    """The feed-forward MatMuls (a constant weight with the intermediate size as one dimension)."""
    import onnx

    inner = int(config.get("intermediate_size") or config.get("hidden_dim") or 0)
    model = onnx.load(str(graph_file), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2 and inner in shapes[n.input[1]]
    ]


# int8 recipes in the order warmup tries them; the first within INT8_* of fp32 is served
# (embeddings; a classifier is served on the first). Measured (README "development models"):
# MiniLM passes "dynamic-per-channel"; all-mpnet-base-v2 needs "ffn-blockwise8".
INT8_RECIPES = ("dynamic-per-channel", "ffn-blockwise8", "blockwise8")
INT8_RECIPE_NOTES = {
    "dynamic-per-channel": "dynamic int8 per-channel on every MatMul (+ fused Attention/EmbedLayerNorm)",
    "ffn-blockwise8": "dynamic int8 per-channel, except the FFN MatMuls: 8-bit blockwise (MatMulNBits, block 128)",
    "blockwise8": "8-bit blockwise (MatMulNBits, block 128) on every MatMul",
}


def build_int8(recipe: str, src: Path, dst: Path, *, fused: bool, config: dict[str, Any]) -> bool:
    """Write ``dst`` with ``recipe``; False when the recipe does not apply to this graph."""
    if recipe == "dynamic-per-channel":
        quantize_int8(src, dst, fused=fused)
    elif recipe == "ffn-blockwise8":
        ffn = ffn_matmuls(src, config)
        if not ffn:
            return False
        staged = dst.with_name(f"{dst.stem}.stage{dst.suffix}")
        quantize_int8(src, staged, fused=fused, nodes_to_exclude=ffn)
        quantize_blockwise8(staged, dst, nodes=ffn)
        staged.unlink()
    elif recipe == "blockwise8":
        quantize_blockwise8(src, dst)
    else:
        raise ValueError(f"unknown int8 recipe {recipe!r}")
    return True


# config.json model_type -> onnxruntime.transformers optimizer model type (encoders it fuses)
FUSION_MODEL_TYPES = {
    "bert": "bert",
    "distilbert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "electra": "bert",
    "mpnet": "bert",
}
# fused ops whose presence means the optimizer did something worth serving
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "EmbedLayerNormalization",
    "BiasGelu",
    "Gelu",
    "FastGelu",
)
FUSION_MIN_COSINE = 0.9999
# int8 embeddings against the fp32 graph they were quantized from, on the parity texts
INT8_MIN_COSINE = 0.98
INT8_MEAN_COSINE = 0.99


def fuse_encoder(src: Path, dst: Path, config: dict[str, Any]) -> dict[str, int] | None:
    """Fuse attention, LayerNorm and GELU/bias with onnxruntime's transformers optimizer.

    Writes ``dst`` and returns the fused-op counts, or None when the architecture is not
    one the optimizer knows or nothing was fused (the unfused graph is then served).
    """
    model_type = FUSION_MODEL_TYPES.get(str(config.get("model_type")))
    if model_type is None:
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    heads = int(config.get("num_attention_heads") or config.get("n_heads") or 0)
    hidden = int(config.get("hidden_size") or config.get("dim") or 0)
    # opt_level 0: the optimizer's own fusions only; serving runs onnxruntime's basic passes
    optimized = optimize_model(
        str(src), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=0, use_gpu=False
    )
    stats = {
        op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n and op in FUSED_OPS
    }
    if not stats:
        return None
    optimized.save_model_to_file(str(dst))
    return stats


def _graph_outputs(
    onnx_file: Path, tokenizer_file: Path, texts: list[str], max_tokens: int = 512
) -> np.ndarray:
    """First output per text (one run per text, no padding, at most ``max_tokens``), mean-pooled over tokens."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from hflambda.engines.onnx import session_options

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    session = ort.InferenceSession(
        str(onnx_file), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    names = {i.name for i in session.get_inputs()}
    rows = []
    for text in texts:
        enc = tokenizer.encode(text)
        ids = np.asarray([enc.ids[:max_tokens]], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        out = session.run(None, {k: v for k, v in feed.items() if k in names})[0]
        rows.append(out.reshape(out.shape[0], -1, out.shape[-1]).mean(axis=1)[0])
    return np.stack(rows).astype(np.float64)


def graph_cosines(a_file: Path, b_file: Path, tokenizer_file: Path, max_tokens: int = 512) -> np.ndarray:
    """Cosine per parity text between two graphs' (mean-pooled) outputs."""
    a = _graph_outputs(a_file, tokenizer_file, PARITY_TEXTS, max_tokens)
    b = _graph_outputs(b_file, tokenizer_file, PARITY_TEXTS, max_tokens)
    return np.asarray(
        (a * b).sum(1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None)
    )


def fusion_agreement(unfused: Path, fused: Path, tokenizer_file: Path, max_tokens: int = 512) -> float:
    """Lowest cosine between the fused and unfused graphs' outputs on the parity texts."""
    return float(graph_cosines(unfused, fused, tokenizer_file, max_tokens).min())


def int8_cosines(
    spec: ModelSpec, fp32: Path, int8: Path, tokenizer_file: Path, reference: np.ndarray | None = None
) -> np.ndarray:
    """Embeddings: cosine per parity text between the int8 graph and the fp32 one.

    ``reference``: the fp32 graph's outputs when already computed (the ladder runs it once)."""
    max_tokens = spec.max_tokens or FALLBACK_MAX_TOKENS
    a = _graph_outputs(fp32, tokenizer_file, PARITY_TEXTS, max_tokens) if reference is None else reference
    b = _graph_outputs(int8, tokenizer_file, PARITY_TEXTS, max_tokens)
    return np.asarray(
        (a * b).sum(1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None)
    )


def quantize_checked(
    spec: ModelSpec, graph_file: Path, dst: Path, *, fused: bool, config: dict[str, Any], tokenizer_file: Path
) -> dict[str, Any]:
    """Walk INT8_RECIPES: serve (write ``dst`` with) the first recipe within INT8_* of the fp32
    graph, or refuse the model (ParityFailed naming every recipe tried and its cosines).

    Embeddings only; a classifier gets the first recipe (its parity is checked on labels)."""
    tried: list[dict[str, Any]] = []
    reference = None
    for recipe in INT8_RECIPES:
        candidate = dst.with_name(f"{dst.stem}.{recipe}{dst.suffix}")
        started = time.perf_counter()
        if not build_int8(recipe, graph_file, candidate, fused=fused, config=config):
            tried.append({"recipe": recipe, "applies": False})
            continue
        seconds = round(time.perf_counter() - started, 3)
        if spec.task != Task.EMBEDDINGS:
            shutil.move(str(candidate), dst)
            return {"recipe": recipe, "recipe_note": INT8_RECIPE_NOTES[recipe], "quantize_s": seconds}
        if reference is None:
            reference = _graph_outputs(
                graph_file, tokenizer_file, PARITY_TEXTS, spec.max_tokens or FALLBACK_MAX_TOKENS
            )
        cos = int8_cosines(spec, graph_file, candidate, tokenizer_file, reference)
        result = {
            "min_cosine": round(float(cos.min()), 6),
            "mean_cosine": round(float(cos.mean()), 6),
            "min_threshold": INT8_MIN_COSINE,
            "mean_threshold": INT8_MEAN_COSINE,
        }
        tried.append(
            {
                "recipe": recipe,
                "min_cosine": result["min_cosine"],
                "mean_cosine": result["mean_cosine"],
                "quantize_s": seconds,
            }
        )
        if cos.min() >= INT8_MIN_COSINE and cos.mean() >= INT8_MEAN_COSINE:  # unrounded
            shutil.move(str(candidate), dst)
            return {**result, "recipe": recipe, "recipe_note": INT8_RECIPE_NOTES[recipe], "tried": tried}
        candidate.unlink()
    summary = "; ".join(
        f"{t['recipe']}: min {t['min_cosine']:.5f}, mean {t['mean_cosine']:.5f}"
        if "min_cosine" in t
        else f"{t['recipe']}: does not apply"
        for t in tried
    )
    raise ParityFailed(
        f"{spec.alias}: int8 graph refused: vs the fp32 export no int8 recipe reaches min cosine {INT8_MIN_COSINE} "
        f"and mean {INT8_MEAN_COSINE} ({summary})",
        parity={
            "int8_vs_fp32": {
                "min_threshold": INT8_MIN_COSINE,
                "mean_threshold": INT8_MEAN_COSINE,
                "tried": tried,
            }
        },
    )


def _fuse_checked(
    work: Path, config: dict[str, Any], timings: dict[str, float], max_tokens: int = 512
) -> tuple[Path, dict[str, Any]]:
    """The graph to serve (fused when fusion applies and agrees with the export) and its record."""
    exported = work / "model.onnx"
    started = time.perf_counter()
    try:
        stats = fuse_encoder(exported, work / "model.fused.onnx", config)
    except Exception as exc:  # the optimizer raises many types on graphs it does not understand
        return exported, {
            "fused": False,
            "reason": f"optimizer failed: {type(exc).__name__}: {exc}",
            "session_optimization": "all",
        }
    finally:
        timings["fuse_s"] = round(time.perf_counter() - started, 3)
    if stats is None:
        return exported, {
            "fused": False,
            "reason": f"no fusion for model_type {config.get('model_type')!r}",
            "session_optimization": "all",
        }
    agreement = fusion_agreement(exported, work / "model.fused.onnx", work / "tokenizer.json", max_tokens)
    if agreement < FUSION_MIN_COSINE:
        return exported, {
            "fused": False,
            "reason": f"fused graph refused: min cosine {agreement:.6f} vs the unfused export (needs {FUSION_MIN_COSINE})",
            "session_optimization": "all",
        }
    record = {
        "fused": True,
        "optimizer": "onnxruntime.transformers",
        "ops": stats,
        "min_cosine_vs_unfused": round(agreement, 6),
        "session_optimization": "basic",
    }
    return work / "model.fused.onnx", record


def _optimum_task(task: Task) -> str:
    return {Task.EMBEDDINGS: "feature-extraction", Task.TEXT_CLASSIFICATION: "text-classification"}[task]


def export_settings(spec: ModelSpec) -> dict[str, Any]:
    """Settings that decide the exported files; a change means a new export."""
    return {
        "task": spec.task.value,
        "format": "onnx",
        "opset": OPSET,
        "quantize": spec.quantize,
        "pooling": spec.pooling if spec.task == Task.EMBEDDINGS else None,
        "normalize": spec.normalize if spec.task == Task.EMBEDDINGS else None,
        "onnx_file": "model.onnx",
        # the registry's input limit (None: the model's window); a change re-checks it against the model
        "max_tokens": spec.max_tokens,
        # transformer graph fusion when the architecture allows it (outcome: manifest info.graph)
        "fusion": "ort-transformers",
    }


def compile_encoder(spec: ModelSpec, source: Path, out: Path) -> CompileResult:
    """Export ``source`` (a local HF model folder) into ``out``: model.onnx + tokenizer files,
    quantized when asked, then checked against the original model on fixed inputs."""
    timings: dict[str, float] = {}
    if not (source / "tokenizer.json").is_file():
        raise ExportFailed(
            f"{spec.alias}: the source has no tokenizer.json (a fast tokenizer is required so serving needs no transformers)",
        )
    # the model's own input window decides max_tokens (RegistryError when the registry asks for more)
    window = input_window(source)
    export = export_settings(spec)  # of the registry's spec: what the runner matches live models on
    spec = spec.model_copy(update={"max_tokens": effective_max_tokens(spec, window)})
    work = out.parent / f"{out.name}.export"
    started = time.perf_counter()
    try:
        from optimum.exporters.onnx import main_export

        main_export(
            str(source),
            output=work,
            task=_optimum_task(spec.task),
            opset=OPSET,
            do_validation=False,
            local_files_only=True,
            library_name="transformers",
        )
    except Exception as exc:  # optimum raises many types for unsupported architectures
        raise ExportFailed(
            f"{spec.alias}: optimum could not export {spec.repo} to ONNX: {type(exc).__name__}: {exc}"
        ) from exc
    timings["export_s"] = round(time.perf_counter() - started, 3)

    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    if not (work / "tokenizer.json").is_file():
        shutil.copy2(source / "tokenizer.json", work / "tokenizer.json")
    model_config = json.loads((source / "config.json").read_text())
    graph_file, graph = _fuse_checked(work, model_config, timings, spec.max_tokens or FALLBACK_MAX_TOKENS)
    if spec.quantize == "int8":
        started = time.perf_counter()
        # the recipe served (and the ones tried before it) is recorded in info.graph.int8_vs_fp32
        graph["int8_vs_fp32"] = quantize_checked(
            spec,
            graph_file,
            onnx_path,
            fused=graph["fused"],
            config=model_config,
            tokenizer_file=work / "tokenizer.json",
        )
        timings["quantize_s"] = round(time.perf_counter() - started, 3)
        if graph["fused"]:
            # a quantized graph also wants onnxruntime's extended passes at load: they fuse each
            # DynamicQuantizeLinear + MatMulInteger + scale into DynamicQuantizeMatMul (MiniLM
            # int8, batch 32 on 2 CPUs: 607 -> 670 sentences/s, session load 0.041 -> 0.028 s)
            graph["session_optimization"] = "extended"
    else:
        shutil.move(str(graph_file), onnx_path)
        if (work / "model.onnx_data").exists() and not graph["fused"]:  # a fused graph is one file
            shutil.move(str(work / "model.onnx_data"), out / "model.onnx_data")
    for name in TOKENIZER_FILES:
        for candidate in (source / name, work / name):
            if candidate.is_file():
                shutil.copy2(candidate, out / name)
                break
    shutil.rmtree(work, ignore_errors=True)

    config = json.loads((source / "config.json").read_text())
    info: dict[str, Any] = {
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "pad_token_id": config.get("pad_token_id"),
        "max_position_embeddings": config.get("max_position_embeddings"),
        "max_tokens": spec.max_tokens,  # what serving enforces (hflambda.limits.serving_max_tokens)
        "model_max_tokens": window.tokens,
        "graph": graph,
    }
    if spec.task == Task.TEXT_CLASSIFICATION:
        info["id2label"] = {str(k): v for k, v in (config.get("id2label") or {}).items()}
        info["problem_type"] = config.get("problem_type")
    else:
        info["dimensions"] = config.get("hidden_size")

    started = time.perf_counter()
    parity = check_parity(spec, source, out, info)
    timings["parity_s"] = round(time.perf_counter() - started, 3)
    return CompileResult(export=export, parity=parity, info=info, timings=timings)


def _reference_outputs(spec: ModelSpec, source: Path, texts: list[str]) -> np.ndarray:
    """The original model's outputs (torch), pooled/normalised as serving does."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    cls = AutoModelForSequenceClassification if spec.task == Task.TEXT_CLASSIFICATION else AutoModel
    model = cls.from_pretrained(str(source), local_files_only=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=spec.max_tokens, return_tensors="pt")
    with torch.inference_mode():
        output = model(**batch)
    if spec.task == Task.TEXT_CLASSIFICATION:
        return np.asarray(output.logits.float().numpy())
    hidden = output.last_hidden_state
    if spec.pooling == "cls":
        pooled = hidden[:, 0]
    else:
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if spec.normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return np.asarray(pooled.float().numpy())


def check_parity(spec: ModelSpec, source: Path, out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Compare the exported model, run through the serving engine, with the original.

    Embeddings: cosine per text (min must reach ``parity_min_cosine``). Classification:
    argmax agreement on every text and the largest probability difference.
    """
    from hflambda.engines.onnx import OnnxClassifier, OnnxEmbedder
    from hflambda.store import Manifest, PublishedModel

    manifest = Manifest(
        alias=spec.alias,
        repo=spec.repo,
        revision="parity",
        source="",
        task=spec.task.value,
        export=export_settings(spec),
        info=info,
    )
    model = PublishedModel(alias=spec.alias, path=out, manifest=manifest)
    texts = PARITY_TEXTS
    reference = _reference_outputs(spec, source, texts)
    if spec.task == Task.TEXT_CLASSIFICATION:
        classifier = OnnxClassifier(model, max_tokens=spec.max_tokens or FALLBACK_MAX_TOKENS)
        onnx_logits = np.concatenate(
            [
                classifier.run(feed)
                for text in texts
                for _idx, feed in classifier._batches(classifier.encode([text], truncate=True))
            ]
        )

        def softmax(x: np.ndarray) -> np.ndarray:
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))

        agree = float(np.mean(onnx_logits.argmax(1) == reference.argmax(1)))
        max_abs = float(np.abs(onnx_logits - reference).max())
        max_prob = float(np.abs(softmax(onnx_logits) - softmax(reference)).max())
        result = {
            "texts": len(texts),
            "argmax_agreement": agree,
            "max_abs_logit_diff": round(max_abs, 6),
            "max_prob_diff": round(max_prob, 6),
        }
        # fp32 must agree exactly on labels; int8 may flip near-ties, so bound probabilities
        ok = (agree == 1.0 and max_abs <= 1e-2) if spec.quantize is None else max_prob <= 0.1
        if not ok:
            raise ParityFailed(
                f"{spec.alias}: exported classifier disagrees with the original: {result}", parity=result
            )
        return result
    embedder = OnnxEmbedder(
        model,
        max_tokens=spec.max_tokens or FALLBACK_MAX_TOKENS,
        pooling=spec.pooling,
        normalize=spec.normalize,
    )
    vectors = embedder.embed(texts, truncate=True)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
    cosines = (vectors * reference).sum(axis=1) / np.clip(norms, 1e-12, None)
    result = {
        "texts": len(texts),
        "min_cosine": round(float(cosines.min()), 6),
        "mean_cosine": round(float(cosines.mean()), 6),
        "min_threshold": spec.parity_min_cosine,
        "mean_threshold": spec.parity_mean_cosine,
    }
    if cosines.min() < spec.parity_min_cosine or cosines.mean() < spec.parity_mean_cosine:
        raise ParityFailed(
            f"{spec.alias}: exported model disagrees with the original: min cosine {cosines.min():.5f} "
            f"(needs {spec.parity_min_cosine}), mean {cosines.mean():.5f} (needs {spec.parity_mean_cosine})",
            parity=result,
        )
    return result

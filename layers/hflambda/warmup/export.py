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

__all__ = ["FUSION_MODEL_TYPES", "PARITY_TEXTS", "compile_encoder", "fuse_encoder", "quantize_int8"]

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
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def quantize_int8(src: Path, dst: Path, *, fused: bool = False) -> None:
    """Dynamic int8, per-channel (FACTS.md: mean cosine 0.992 vs 0.957 per-tensor).

    An unfused graph: MatMul only. A fused one (quantized after fusion, which measured both
    faster and closer to fp32 than fusing a quantized graph): MatMul plus the fused
    Attention and EmbedLayerNormalization ops (QAttention, QEmbedLayerNormalization).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention", "EmbedLayerNormalization"] if fused else ["MatMul"]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=ops,
        # fused ops come from the com.microsoft domain, which ONNX shape inference cannot type
        extra_options={"DefaultTensorType": 1} if fused else {},
    )


# config.json model_type -> onnxruntime.transformers optimizer model type (encoders it fuses)
FUSION_MODEL_TYPES = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "mpnet": "bert"}
# fused ops whose presence means the optimizer did something worth serving
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "EmbedLayerNormalization", "BiasGelu", "Gelu", "FastGelu")
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
    optimized = optimize_model(str(src), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=0, use_gpu=False)
    stats = {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n and op in FUSED_OPS}
    if not stats:
        return None
    optimized.save_model_to_file(str(dst))
    return stats


def _graph_outputs(onnx_file: Path, tokenizer_file: Path, texts: list[str], max_tokens: int = 512) -> np.ndarray:
    """First output per text (one run per text, no padding, at most ``max_tokens``), mean-pooled over tokens."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from hflambda.engines.onnx import session_options

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    session = ort.InferenceSession(str(onnx_file), sess_options=session_options(), providers=["CPUExecutionProvider"])
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
    return np.asarray((a * b).sum(1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None))


def fusion_agreement(unfused: Path, fused: Path, tokenizer_file: Path, max_tokens: int = 512) -> float:
    """Lowest cosine between the fused and unfused graphs' outputs on the parity texts."""
    return float(graph_cosines(unfused, fused, tokenizer_file, max_tokens).min())


def check_int8(spec: ModelSpec, fp32: Path, int8: Path, tokenizer_file: Path) -> dict[str, float]:
    """Embeddings: the int8 graph must stay within INT8_* of the fp32 graph, or is refused."""
    cos = graph_cosines(fp32, int8, tokenizer_file, spec.max_tokens or FALLBACK_MAX_TOKENS)
    result = {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6), "min_threshold": INT8_MIN_COSINE, "mean_threshold": INT8_MEAN_COSINE}
    if cos.min() < INT8_MIN_COSINE or cos.mean() < INT8_MEAN_COSINE:
        raise ParityFailed(
            f"{spec.alias}: int8 graph refused: vs the fp32 export min cosine {cos.min():.5f} (needs {INT8_MIN_COSINE}), "
            f"mean {cos.mean():.5f} (needs {INT8_MEAN_COSINE})",
            parity={"int8_vs_fp32": result},
        )
    return result


def _fuse_checked(work: Path, config: dict[str, Any], timings: dict[str, float], max_tokens: int = 512) -> tuple[Path, dict[str, Any]]:
    """The graph to serve (fused when fusion applies and agrees with the export) and its record."""
    exported = work / "model.onnx"
    started = time.perf_counter()
    try:
        stats = fuse_encoder(exported, work / "model.fused.onnx", config)
    except Exception as exc:  # the optimizer raises many types on graphs it does not understand
        return exported, {"fused": False, "reason": f"optimizer failed: {type(exc).__name__}: {exc}", "session_optimization": "all"}
    finally:
        timings["fuse_s"] = round(time.perf_counter() - started, 3)
    if stats is None:
        return exported, {"fused": False, "reason": f"no fusion for model_type {config.get('model_type')!r}", "session_optimization": "all"}
    agreement = fusion_agreement(exported, work / "model.fused.onnx", work / "tokenizer.json", max_tokens)
    if agreement < FUSION_MIN_COSINE:
        return exported, {
            "fused": False,
            "reason": f"fused graph refused: min cosine {agreement:.6f} vs the unfused export (needs {FUSION_MIN_COSINE})",
            "session_optimization": "all",
        }
    record = {"fused": True, "optimizer": "onnxruntime.transformers", "ops": stats, "min_cosine_vs_unfused": round(agreement, 6), "session_optimization": "basic"}
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
        raise ExportFailed(f"{spec.alias}: optimum could not export {spec.repo} to ONNX: {type(exc).__name__}: {exc}") from exc
    timings["export_s"] = round(time.perf_counter() - started, 3)

    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    if not (work / "tokenizer.json").is_file():
        shutil.copy2(source / "tokenizer.json", work / "tokenizer.json")
    graph_file, graph = _fuse_checked(work, json.loads((source / "config.json").read_text()), timings, spec.max_tokens or FALLBACK_MAX_TOKENS)
    if spec.quantize == "int8":
        started = time.perf_counter()
        quantize_int8(graph_file, onnx_path, fused=graph["fused"])
        timings["quantize_s"] = round(time.perf_counter() - started, 3)
        if spec.task == Task.EMBEDDINGS:
            graph["int8_vs_fp32"] = check_int8(spec, graph_file, onnx_path, work / "tokenizer.json")
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

    manifest = Manifest(alias=spec.alias, repo=spec.repo, revision="parity", source="", task=spec.task.value, export=export_settings(spec), info=info)
    model = PublishedModel(alias=spec.alias, path=out, manifest=manifest)
    texts = PARITY_TEXTS
    reference = _reference_outputs(spec, source, texts)
    if spec.task == Task.TEXT_CLASSIFICATION:
        classifier = OnnxClassifier(model, max_tokens=spec.max_tokens or FALLBACK_MAX_TOKENS)
        onnx_logits = np.concatenate(
            [classifier.run(feed) for text in texts for _idx, feed in classifier._batches(classifier.encode([text], truncate=True))]
        )

        def softmax(x: np.ndarray) -> np.ndarray:
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))

        agree = float(np.mean(onnx_logits.argmax(1) == reference.argmax(1)))
        max_abs = float(np.abs(onnx_logits - reference).max())
        max_prob = float(np.abs(softmax(onnx_logits) - softmax(reference)).max())
        result = {"texts": len(texts), "argmax_agreement": agree, "max_abs_logit_diff": round(max_abs, 6), "max_prob_diff": round(max_prob, 6)}
        # fp32 must agree exactly on labels; int8 may flip near-ties, so bound probabilities
        ok = (agree == 1.0 and max_abs <= 1e-2) if spec.quantize is None else max_prob <= 0.1
        if not ok:
            raise ParityFailed(f"{spec.alias}: exported classifier disagrees with the original: {result}", parity=result)
        return result
    embedder = OnnxEmbedder(model, max_tokens=spec.max_tokens or FALLBACK_MAX_TOKENS, pooling=spec.pooling, normalize=spec.normalize)
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

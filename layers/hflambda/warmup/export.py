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
from hflambda.registry import ModelSpec, Task
from hflambda.warmup.types import CompileResult

__all__ = ["PARITY_TEXTS", "compile_encoder", "quantize_int8"]

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


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8, per-channel, MatMul only (FACTS.md: mean cosine 0.992 vs 0.957 per-tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )


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
    }


def compile_encoder(spec: ModelSpec, source: Path, out: Path) -> CompileResult:
    """Export ``source`` (a local HF model folder) into ``out``: model.onnx + tokenizer files,
    quantized when asked, then checked against the original model on fixed inputs."""
    timings: dict[str, float] = {}
    if not (source / "tokenizer.json").is_file():
        raise ExportFailed(
            f"{spec.alias}: the source has no tokenizer.json (a fast tokenizer is required so serving needs no transformers)",
        )
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
    if spec.quantize == "int8":
        started = time.perf_counter()
        quantize_int8(work / "model.onnx", onnx_path)
        timings["quantize_s"] = round(time.perf_counter() - started, 3)
    else:
        shutil.move(str(work / "model.onnx"), onnx_path)
        if (work / "model.onnx_data").exists():
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
    }
    if spec.task == Task.TEXT_CLASSIFICATION:
        info["id2label"] = {str(k): v for k, v in (config.get("id2label") or {}).items()}
        info["problem_type"] = config.get("problem_type")
    else:
        info["dimensions"] = config.get("hidden_size")

    started = time.perf_counter()
    parity = check_parity(spec, source, out, info)
    timings["parity_s"] = round(time.perf_counter() - started, 3)
    return CompileResult(export=export_settings(spec), parity=parity, info=info, timings=timings)


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
        classifier = OnnxClassifier(model, max_tokens=spec.max_tokens)
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
    embedder = OnnxEmbedder(model, max_tokens=spec.max_tokens, pooling=spec.pooling, normalize=spec.normalize)
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

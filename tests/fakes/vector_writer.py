"""A writer process for the concurrent-writers test: ``python -m tests.fakes.vector_writer``.

Writes, in batches of 10 through ``VectorStore.apply`` (what an index function does):
``own`` documents only this worker writes, and ``shared`` documents both workers write
with interleaved versions (worker w writes version ts = 2*round + w), so the newest version
of a shared document comes from whichever worker wrote the largest ts.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hflambda.messages import version_key
from hflambda.settings import Settings
from hflambda.vectors import open_vector_store
from hflambda.vectors.base import Chunk, UpsertOp, VectorSpace

SPACE = VectorSpace("embed", "rev-1", 16)


def chunks_for(version_ts: int) -> int:
    """Chunk count varies with the version, so a stale version would leave extra rows."""
    return 1 + version_ts % 4


def op(user: str, doc: str, ts: int, rng: np.random.Generator) -> UpsertOp:
    text = f"{doc} v{ts}"
    vectors = rng.standard_normal((chunks_for(ts), SPACE.dimensions)).astype(np.float32)
    return UpsertOp(
        user_id=user,
        document_id=doc,
        version=version_key(ts, "upsert", text),
        ts=ts,
        text=text,
        metadata={"ts": ts},
        chunks=tuple(Chunk(i, f"{text} c{i}", 0, len(text), v / np.linalg.norm(v)) for i, v in enumerate(vectors)),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--own", type=int, default=100)
    parser.add_argument("--shared", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.worker)
    store = open_vector_store(Settings(vector_uri=args.uri))
    ops = [op("writer", f"w{args.worker}-{i}", 1, rng) for i in range(args.own)]
    for round_ in range(args.rounds):
        ops += [op("writer", f"shared-{i}", 2 * round_ + args.worker + 10, rng) for i in range(args.shared)]
    rng.shuffle(ops)  # type: ignore[arg-type]
    written = 0
    for start in range(0, len(ops), 10):
        result = store.apply(ops[start : start + 10], SPACE)
        written += len(result.written)
    print(json.dumps({"worker": args.worker, "ops": len(ops), "written": written}))


if __name__ == "__main__":
    main()

"""A writer process for the concurrent-writers fault test: ``python -m tests.fakes.vector_writer PLAN``.

Plays one index function on the AWS vector backend (moto server + the QueryVectors fake,
``AWS_ENDPOINT_URL`` and ``HFLAMBDA_VECTOR_*`` in the environment): reads a JSON plan of
batches of messages, and per batch does what ``Indexer`` does with the store (``plan``,
then ``apply`` of what is left), printing ``ack <batch>`` once a batch is done — the SQS
delete. ``--crash-at N`` makes the process die (``os._exit``) at its N-th catalogue commit,
after that document's vectors were written: the crash window between the two stores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Any

import numpy as np

from hflambda.messages import version_key
from hflambda.vectors import open_vector_store
from hflambda.vectors.aws import S3VectorsStore
from hflambda.vectors.types import Chunk, DeleteOp, UpsertOp, VectorSpace, WriteOp

SPACE = VectorSpace("embed", "rev-1", 8)


def text_of(doc: str, ts: int) -> str:
    return f"{doc} at {ts}"


def chunks_of(ts: int) -> int:
    """Chunk count varies with the version, so a stale version shows up in the counts."""
    return 1 + ts % 4


def vector(doc: str, ts: int, chunk: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"{doc}|{ts}|{chunk}".encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(SPACE.dimensions).astype(np.float32)
    return v / np.linalg.norm(v)


def to_op(message: dict[str, Any]) -> WriteOp:
    user, doc, ts = message["user"], message["doc"], int(message["ts"])
    if message["op"] == "delete":
        return DeleteOp(user_id=user, document_id=doc, version=version_key(ts, "delete"), ts=ts)
    text = text_of(doc, ts)
    return UpsertOp(
        user_id=user,
        document_id=doc,
        version=version_key(ts, "upsert", text),
        ts=ts,
        text=text,
        metadata={"ts": ts},
        chunks=tuple(
            Chunk(i, f"{text} #{i}", 0, len(text), vector(doc, ts, i)) for i in range(chunks_of(ts))
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("plan")
    parser.add_argument("--crash-at", type=int, default=0)
    args = parser.parse_args()
    with open(args.plan) as plan_file:
        batches: list[list[dict[str, Any]]] = json.load(plan_file)
    store = open_vector_store()
    assert isinstance(store, S3VectorsStore)
    if args.crash_at:
        commits = {"n": 0}
        original = store._commit

        def crashing(*a: Any, **kw: Any) -> Any:
            commits["n"] += 1
            if commits["n"] >= args.crash_at:
                sys.stdout.flush()
                os._exit(17)  # killed between the vector write and the catalogue write
            return original(*a, **kw)

        store._commit = crashing  # type: ignore[method-assign]
        store.workers = 1  # commits in order, so the crash point is deterministic
    for number, batch in enumerate(batches):
        ops = [to_op(m) for m in batch]
        newest: dict[tuple[str, str], WriteOp] = {}
        for op in ops:
            if op.key not in newest or op.version > newest[op.key].version:
                newest[op.key] = op
        plan = store.plan(list(newest.values()), SPACE)
        work = [op for key, op in newest.items() if key not in plan]
        if work:
            store.apply(work, SPACE, plan)
        print(f"ack {number}", flush=True)


if __name__ == "__main__":
    main()

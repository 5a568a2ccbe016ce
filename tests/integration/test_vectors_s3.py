"""The vector store on S3 (moto server on loopback): the same contract, and two writer
processes on one table losing nothing and converging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest

from hflambda.messages import version_key
from hflambda.settings import Settings
from hflambda.vectors import open_vector_store
from hflambda.vectors.base import Chunk, DeleteOp, UpsertOp
from hflambda.vectors.lance import LanceVectorStore, s3_storage_options
from tests.fakes.vector_writer import SPACE, chunks_for
from tests.fixtures.aws import aws_variables
from tests.fixtures.models import REPO

pytestmark = pytest.mark.integration


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(SPACE.dimensions).astype(np.float32)
    return v / np.linalg.norm(v)


def test_storage_options_come_from_the_environment(aws_env: str) -> None:
    options = s3_storage_options()
    assert options["aws_endpoint"] == aws_env and options["allow_http"] == "true"
    assert options["aws_region"] == "us-east-1" and options["aws_access_key_id"] == "test"


def test_s3_store_round_trip(aws_env: str, s3_bucket: str, s3: Any) -> None:
    store = open_vector_store(Settings(vector_uri=f"s3://{s3_bucket}/tenant-a"))
    assert isinstance(store, LanceVectorStore)
    text = "on s3"
    op = UpsertOp("u", "d", version_key(1, "upsert", text), 1, text, {"k": "v"}, (Chunk(0, text, 0, 5, unit(1)),))
    store.apply([op], SPACE)
    hits = store.search("u", unit(1), space=SPACE, filter={"k": "v"})
    assert [(h.document_id, h.text) for h in hits] == [("d", "on s3")]
    store.apply([DeleteOp("u", "d", version_key(2, "delete"), 2)], SPACE)
    assert store.search("u", unit(1), space=SPACE) == []
    assert store.maintain().optimized
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys and all(k.startswith("tenant-a/") for k in keys)


@pytest.mark.slow
def test_two_writer_processes_lose_nothing_and_converge(aws_env: str, s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/concurrent"
    # create the tables first (as the first deployed batch would), then race
    seed = open_vector_store(Settings(vector_uri=uri))
    seed.apply([UpsertOp("writer", "seed", version_key(1, "upsert"), 1, "seed", {}, (Chunk(0, "seed", 0, 4, unit(0)),))], SPACE)
    env = {**os.environ, **aws_variables(aws_env), "PYTHONPATH": str(REPO), "POWERTOOLS_LOG_LEVEL": "WARNING"}
    own, shared, rounds = 80, 10, 3
    argv = [sys.executable, "-m", "tests.fakes.vector_writer", "--uri", uri, "--own", str(own), "--shared", str(shared), "--rounds", str(rounds)]
    workers = [subprocess.Popen([*argv, "--worker", str(w)], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["ops"] == own + shared * rounds

    store = open_vector_store(Settings(vector_uri=uri))
    keys = [("writer", f"w{w}-{i}") for w in (0, 1) for i in range(own)] + [("writer", f"shared-{i}") for i in range(shared)]
    rows = store.chunk_rows(keys, SPACE)  # type: ignore[attr-defined]
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_doc.setdefault(row["document_id"], []).append(row)
    # every document of either writer is there, with exactly its chunks, no duplicates
    for user, doc in keys:
        stored = store.get_document(user, doc)
        assert stored is not None, doc
        chunks = by_doc.get(doc, [])
        assert sorted(r["chunk"] for r in chunks) == list(range(chunks_for(stored.ts))), (doc, stored.ts, chunks)
        assert {r["version"] for r in chunks} == {stored.version}
    # shared documents converge to the newest version written by either worker
    newest = 2 * (rounds - 1) + 1 + 10
    assert {store.get_document("writer", f"shared-{i}").ts for i in range(shared)} == {newest}  # type: ignore[union-attr]
    counts = Counter((r["document_id"], r["chunk"]) for r in rows)
    assert max(counts.values()) == 1

"""The AWS vector backend as the functions use it: no LanceDB or pyarrow on its import path,
the dev stack's resources, and its API-call budget per batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from hflambda.devstack import create_aws_vectors
from hflambda.messages import version_key
from hflambda.settings import Settings
from hflambda.vectors import open_vector_store
from hflambda.vectors.aws import S3VectorsStore
from hflambda.vectors.types import Chunk, UpsertOp, VectorSpace

pytestmark = pytest.mark.integration

PROBE = """
import json, sys
import numpy as np
import functions.predict.routers.search, functions.predict.routers.documents  # predict's vector side
import hflambda.indexing  # the index function's library
from hflambda.vectors import get_vector_store
from hflambda.vectors.types import Chunk, UpsertOp, VectorSpace
space = VectorSpace("embed", "r1", 8)
v = np.ones(8, dtype=np.float32) / np.sqrt(8)
store = get_vector_store()
store.apply([UpsertOp("u", "d", "000000000000001.0.x", 1, "text", {}, (Chunk(0, "text", 0, 4, v),))], space)
hits = store.search("u", v, space=space, top_k=3)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lancedb", "lance", "pyarrow", "pandas"))
print(json.dumps({"backend": type(store).__name__, "hits": [h.document_id for h in hits], "heavy": heavy}))
"""


def test_the_aws_backend_path_imports_no_lancedb_or_pyarrow(aws_vectors: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "PATH", "HOME"))} | aws_vectors
    env["PYTHONPATH"] = os.pathsep.join(["layers", "."])
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"backend": "S3VectorsStore", "hits": ["d"], "heavy": []}


def test_dev_stack_creates_the_resources_the_functions_use(moto_server: str, aws_env: str) -> None:
    env = create_aws_vectors(
        moto_server, dimensions=8, bucket="dev-vectors-test", index="chunks", table="dev-catalogue-test"
    )
    settings = Settings(
        vector_backend="aws",
        vector_bucket=env["HFLAMBDA_VECTOR_BUCKET"],
        vector_index=env["HFLAMBDA_VECTOR_INDEX"],
        vector_table=env["HFLAMBDA_VECTOR_TABLE"],
    )
    store = open_vector_store(settings)
    assert isinstance(store, S3VectorsStore)
    create_aws_vectors(
        moto_server, dimensions=8, bucket="dev-vectors-test", index="chunks", table="dev-catalogue-test"
    )  # idempotent
    assert store.search("nobody", np.ones(8, dtype=np.float32), space=VectorSpace("e", "r", 8)) == []


def test_api_calls_per_batch_are_bounded(aws_vectors: dict[str, str]) -> None:
    """A batch of 100 new documents (3 chunks each): 2 PutVectors (500 vectors each) and a
    handful of DynamoDB calls per document, whatever the batch size."""
    store = open_vector_store(Settings())
    assert isinstance(store, S3VectorsStore)
    space = VectorSpace("embed", "r1", 8)
    rng = np.random.default_rng(3)
    ops = [
        UpsertOp(
            "u",
            f"d{i}",
            version_key(1, "upsert", str(i)),
            1,
            f"doc {i}",
            {"i": i},
            tuple(Chunk(c, "x", 0, 1, rng.standard_normal(8).astype(np.float32)) for c in range(3)),
        )
        for i in range(100)
    ]
    store.calls.clear()
    plan = store.plan(ops, space)
    store.apply(ops, space, plan)
    calls: dict[str, Any] = dict(store.calls)
    assert calls.get("s3vectors.PutVectors") == 1  # 300 vectors: one call
    assert calls.get("dynamodb.BatchGetItem") == 1  # the plan's read of 100 items
    assert calls.get("dynamodb.UpdateItem") == 200  # register + commit per document
    assert "s3vectors.DeleteVectors" not in calls  # nothing to collect for new documents

"""Serving code paths never import torch, transformers, optimum or huggingface_hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.models import REPO, Warmed

pytestmark = pytest.mark.integration

HEAVY = ["torch", "transformers", "optimum", "huggingface_hub", "sentence_transformers"]

PROBE = """
import json, sys
from fastapi.testclient import TestClient
import functions.predict.handler
import functions.index.handler
from functions.predict.app import app
from hflambda.engines import get_pool
vectors = get_pool().get("embed").embed(["no torch here"])
print(json.dumps({"heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r), "dims": int(vectors.shape[1])}))
"""


def test_predict_and_index_import_no_heavy_libraries(warmed: Warmed, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HFLAMBDA_MODEL_STORE": str(warmed.store),
        "HFLAMBDA_REGISTRY": str(warmed.registry),
        "HFLAMBDA_VECTOR_URI": str(tmp_path / "vectors"),
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["dims"] == 384

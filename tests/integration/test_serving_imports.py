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
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["dims"] == 384


LAMBDA_PROBE = """
import json, sys
from functions.predict.handler import handler
event = {"version": "2.0", "routeKey": "POST /v1/embeddings", "rawPath": "/v1/embeddings", "rawQueryString": "",
  "headers": {"content-type": "application/json"},
  "requestContext": {"http": {"method": "POST", "path": "/v1/embeddings", "sourceIp": "127.0.0.1", "protocol": "HTTP/1.1", "userAgent": "t"},
     "requestId": "r1", "stage": "$default", "authorizer": {"jwt": {"claims": {"sub": "alice"}, "scopes": None}}},
  "body": json.dumps({"input": "hi", "model": "embed"}), "isBase64Encoded": False}
class Ctx:
    function_name = "predict"; memory_limit_in_mb = 2048; invoked_function_arn = "arn:aws:lambda:us-east-1:0:function:predict"; aws_request_id = "r1"
    def get_remaining_time_in_millis(self): return 30000
out = handler(event, Ctx())
print(json.dumps({"status": out["statusCode"], "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("jwt", "httpx", "cryptography", "aws_xray_sdk", "lancedb"))}))
"""


def test_lambda_cold_path_skips_the_verifier_and_xray(warmed: Warmed, tmp_path: Path) -> None:
    """Behind API Gateway the authorizer verified the token: PyJWT, httpx, cryptography, the
    X-Ray SDK (tracing off) and LanceDB (no search yet) stay out of the cold start."""
    env = {
        **os.environ,
        "HFLAMBDA_MODEL_STORE": str(warmed.store),
        "HFLAMBDA_REGISTRY": str(warmed.registry),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", LAMBDA_PROBE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "loaded": []}

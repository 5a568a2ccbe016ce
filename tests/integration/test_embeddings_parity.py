"""The served embeddings match sentence-transformers' own output for all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

from hflambda.engines.onnx import OnnxClassifier, OnnxEmbedder
from hflambda.errors import BadInput
from hflambda.store import ModelStore
from tests.fixtures.models import Warmed, minilm_path

pytestmark = pytest.mark.integration

SENTENCES = [
    "This framework generates embeddings for each input sentence.",
    "Sentences are passed as a list of strings.",
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Lambda functions freeze between invocations, so background threads stall.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "ok",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    return np.asarray(model.encode(SENTENCES, normalize_embeddings=False))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def embedder(warmed: Warmed, alias: str) -> OnnxEmbedder:
    return OnnxEmbedder(ModelStore(warmed.store).resolve(alias), max_tokens=256)


def test_fp32_matches_sentence_transformers(warmed: Warmed, reference: np.ndarray) -> None:
    ours = embedder(warmed, "embed").embed(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines(ours, reference).min() >= 0.9999


def test_int8_close_to_sentence_transformers(warmed: Warmed, reference: np.ndarray) -> None:
    ours = embedder(warmed, "embed-int8").embed(SENTENCES)
    sims = cosines(ours, reference)
    assert sims.mean() >= 0.99, sims
    assert sims.min() >= 0.95, sims


def test_batch_order_and_padding_do_not_change_vectors(warmed: Warmed) -> None:
    model = embedder(warmed, "embed")
    together = model.embed(SENTENCES)
    alone = np.stack([model.embed([s])[0] for s in SENTENCES])
    assert np.allclose(together, alone, atol=1e-5)


def test_token_limit_rejects_unless_truncating(warmed: Warmed) -> None:
    model = embedder(warmed, "embed")
    long_text = "word " * 400
    with pytest.raises(BadInput, match=r"input\[1\] is \d+ tokens; model 'embed' accepts at most 256"):
        model.embed(["fine", long_text])
    assert model.embed(["fine", long_text], truncate=True).shape == (2, 384)


def test_classifier_labels_come_from_the_config(warmed: Warmed) -> None:
    classifier = OnnxClassifier(ModelStore(warmed.store).resolve("classify"), max_tokens=128)
    assert classifier.labels == ["negative", "neutral", "positive"]
    results = classifier.classify(["good", "bad", "fine"], top_k=None)
    for row in results:
        assert [label for label, _ in row] != [] and len(row) == 3
        assert abs(sum(score for _, score in row) - 1.0) < 1e-5
        assert row == sorted(row, key=lambda item: -item[1])
    assert len(classifier.classify(["x"], top_k=2)[0]) == 2

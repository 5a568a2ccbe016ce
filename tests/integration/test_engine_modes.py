"""The two ways an encoder engine uses the CPUs: latency (one run on every CPU, predict) and
throughput (one-CPU runs over a call's length buckets, several at once: the index function).
Both give the same answers in the same order; only the session settings differ."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hflambda.engines.onnx import OnnxClassifier, OnnxEmbedder, split_for_workers
from hflambda.limits import serving_max_tokens
from hflambda.registry import load_registry
from hflambda.store import ModelStore
from tests.fixtures.models import Warmed

pytestmark = pytest.mark.integration

TEXTS = [
    "ok",
    "The quick brown fox jumps over the lazy dog.",
    "Lambda functions freeze between invocations, so background threads stall. " * 9,
    "I love this, it is wonderful and works perfectly.",
    "Serverless inference loads ONNX models from EFS in well under a second. " * 20,
    "This is terrible; it broke on the first day and support never answered.",
    "A man is eating food.",
] * 5


def _embedders(warmed: Warmed, alias: str) -> tuple[OnnxEmbedder, OnnxEmbedder]:
    spec = load_registry(warmed.registry, profile="local").get(alias)
    model = ModelStore(warmed.store).resolve(alias)
    limit = serving_max_tokens(spec, model)
    latency = OnnxEmbedder(model, max_tokens=limit, threads=2)
    throughput = OnnxEmbedder(model, max_tokens=limit, threads=2, mode="throughput")
    return latency, throughput


@pytest.mark.parametrize("alias", ["embed", "embed-int8"])
def test_throughput_mode_embeds_what_latency_mode_does(warmed: Warmed, alias: str) -> None:
    latency, throughput = _embedders(warmed, alias)
    assert (
        latency.session_settings["intra_op_threads"] == 2 and latency.session_settings["parallel_runs"] == 1
    )
    assert (
        throughput.session_settings["intra_op_threads"] == 1
        and throughput.session_settings["parallel_runs"] == 2
    )
    assert throughput.session_settings["mode"] == "throughput"
    expected = latency.embed(TEXTS, truncate=True)
    got = throughput.embed(TEXTS, truncate=True)
    assert got.shape == expected.shape == (len(TEXTS), 384)
    assert np.allclose(got, expected, atol=1e-5)
    # one text, and the order of the call, are kept
    assert np.allclose(throughput.embed(TEXTS[2:3]), expected[2:3], atol=1e-5)
    assert np.allclose(throughput.embed(TEXTS[::-1], truncate=True), expected[::-1], atol=1e-5)


def test_throughput_mode_runs_in_parallel_on_one_session(
    warmed: Warmed, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, throughput = _embedders(warmed, "embed")
    threads: set[str] = set()
    rows: list[int] = []
    run = throughput.run

    def recording(feed: dict[str, np.ndarray]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        rows.append(len(feed["input_ids"]))
        return np.asarray(run(feed))

    monkeypatch.setattr(throughput, "run", recording)
    same_length = ["The quick brown fox jumps over the lazy dog."] * 32
    throughput.embed(same_length)
    # one length bucket of 32 rows is split so both workers run, on the pool's threads
    assert sorted(rows) == [16, 16]
    assert len(threads) == 2 and all(name.startswith("ort-embed") for name in threads)


def test_throughput_mode_classifies_what_latency_mode_does(warmed: Warmed) -> None:
    spec = load_registry(warmed.registry, profile="local").get("classify-int8")
    model = ModelStore(warmed.store).resolve("classify-int8")
    limit = serving_max_tokens(spec, model)
    latency = OnnxClassifier(model, max_tokens=limit, threads=2)
    throughput = OnnxClassifier(model, max_tokens=limit, threads=2, mode="throughput")
    expected = latency.classify(TEXTS, top_k=None, truncate=True)
    got = throughput.classify(TEXTS, top_k=None, truncate=True)
    assert [[label for label, _ in row] for row in got] == [[label for label, _ in row] for row in expected]
    assert np.allclose(
        [[s for _, s in row] for row in got], [[s for _, s in row] for row in expected], atol=1e-5
    )


def test_split_for_workers_halves_the_costliest_group_and_keeps_every_position() -> None:
    lengths = [10, 12, 300, 301, 302, 5]
    groups = [[5, 0, 1], [2, 3, 4]]
    out = split_for_workers(groups, lengths, 4)
    assert sorted(i for g in out for i in g) == list(range(6))
    assert len(out) == 4
    # costliest first: the long documents' halves lead
    assert out[0][0] in (2, 3, 4)
    # never more pieces than rows
    assert split_for_workers([[0]], lengths, 4) == [[0]]
    assert split_for_workers(groups, lengths, 1) == sorted(
        groups, key=lambda g: len(g) * max(lengths[i] for i in g), reverse=True
    )

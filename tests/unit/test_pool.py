"""The model pool: one engine per alias, LRU eviction within the memory budget, new
revisions picked up, and failures typed (never a crash at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hflambda.engines import LOADERS, ModelPool
from hflambda.errors import ModelNotFound, ModelNotReady
from hflambda.registry import Registry, Task, parse_registry
from hflambda.settings import Settings
from hflambda.store import Manifest, ModelStore

SHA = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"


class FakeEngine:
    def __init__(self, alias: str, model: Any, size: int) -> None:
        self.alias = alias
        self.model = model
        self.memory_bytes = size


def publish(store: ModelStore, alias: str, revision: str = SHA) -> None:
    staging = store.new_staging(alias)
    (staging / "model.onnx").write_bytes(b"x" * 10)
    store.publish(
        staging, Manifest(alias=alias, repo="o/m", revision=revision, source="file:///x", task="embeddings")
    )


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelPool:
    text = "".join(
        f'[models.{a}]\nrepo = "o/{a}"\nrevision = "{SHA}"\ntask = "embeddings"\npreload = true\n'
        for a in ("a", "b", "c")
    )
    models, problems = parse_registry(text)
    assert problems == []
    store = ModelStore(tmp_path)
    for alias in ("a", "b"):
        publish(store, alias)
    loads: list[str] = []

    def loader(spec: Any, model: Any, settings: Any) -> FakeEngine:
        loads.append(spec.alias)
        return FakeEngine(spec.alias, model, 40 << 20)

    monkeypatch.setitem(LOADERS, Task.EMBEDDINGS, loader)
    built = ModelPool(Registry(models=models), store, Settings(model_memory_budget_mb=100))
    built.loads = loads  # type: ignore[attr-defined]
    return built


def test_one_engine_per_alias(pool: ModelPool) -> None:
    assert pool.get("a") is pool.get("a")
    assert pool.loads == ["a"]  # type: ignore[attr-defined]


def test_lru_eviction_within_budget(pool: ModelPool) -> None:
    publish(pool.store, "c")
    pool.get("a")
    pool.get("b")
    pool.get("a")  # a is now most recently used
    pool.get("c")  # 3 x 40 MB > 100 MB: evicts b, the least recently used
    assert pool.loaded() == ["a", "c"]


def test_new_revision_is_picked_up(pool: ModelPool) -> None:
    first = pool.get("a")
    publish(pool.store, "a", revision="d" * 40)
    second = pool.get("a")
    assert second is not first and second.model.revision == "d" * 40


def test_preload_reports_unwarmed_models_without_raising(pool: ModelPool) -> None:
    result = pool.preload()
    assert result["a"] is None and result["b"] is None
    assert result["c"] is not None and "not warmed" in result["c"]
    with pytest.raises(ModelNotReady, match="'c'"):
        pool.get("c")
    with pytest.raises(ModelNotFound):
        pool.get("zzz")


def test_loader_crash_is_model_not_ready(pool: ModelPool, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec: Any, model: Any, settings: Any) -> Any:
        raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF")

    monkeypatch.setitem(LOADERS, Task.EMBEDDINGS, broken)
    with pytest.raises(ModelNotReady, match="INVALID_PROTOBUF"):
        pool.get("a")
    assert "INVALID_PROTOBUF" in str(pool.records["a"].error)

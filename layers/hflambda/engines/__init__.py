"""Engines and the process-wide model pool.

Models live in process memory only (never serialized): loaded at import for the registry's
``preload`` models, lazily for the rest, and evicted least-recently-used first when the pool
would exceed its memory budget.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from hflambda.engines.base import ClassificationResult, Embedder, Engine, TextClassifier
from hflambda.errors import HflambdaError, ModelNotReady
from hflambda.limits import serving_max_tokens
from hflambda.registry import ModelSpec, Registry, Task, load_registry
from hflambda.runtime import function_memory_mb
from hflambda.settings import Settings, get_settings
from hflambda.store import ModelStore, PublishedModel

__all__ = [
    "LOADERS",
    "ClassificationResult",
    "Embedder",
    "Engine",
    "ModelPool",
    "TextClassifier",
    "get_pool",
    "get_registry",
]

Loader = Callable[[ModelSpec, PublishedModel, Settings], Engine]


def _load_embedder(spec: ModelSpec, model: PublishedModel, settings: Settings) -> Embedder:
    from hflambda.engines.onnx import OnnxEmbedder

    return OnnxEmbedder(
        model,
        max_tokens=serving_max_tokens(spec, model),
        pooling=spec.pooling,
        normalize=spec.normalize,
        threads=settings.ort_threads,
        mode=settings.ort_mode,
    )


def _load_classifier(spec: ModelSpec, model: PublishedModel, settings: Settings) -> TextClassifier:
    from hflambda.engines.onnx import OnnxClassifier

    return OnnxClassifier(
        model,
        max_tokens=serving_max_tokens(spec, model),
        threads=settings.ort_threads,
        mode=settings.ort_mode,
    )


def _load_generator(spec: ModelSpec, model: PublishedModel, settings: Settings) -> Engine:
    from hflambda.generation.local import LocalChatEngine

    return LocalChatEngine(spec, model, threads=settings.ort_threads)


# task -> how to load a published model of that task
LOADERS: dict[Task, Loader] = {
    Task.EMBEDDINGS: _load_embedder,
    Task.TEXT_CLASSIFICATION: _load_classifier,
    Task.TEXT_GENERATION: _load_generator,
}


def _wrong_engine(alias: str, engine: Engine, protocol: str) -> ModelNotReady:
    """A loader that returned the wrong kind of engine: a bug in this image, said as such."""
    return ModelNotReady(alias, f"its loader returned {type(engine).__name__}, which is not an {protocol}")


@dataclass
class LoadRecord:
    """What the pool knows of one alias: load time and the last failure."""

    load_ms: float | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)


class ModelPool:
    """Loaded engines by alias, within a memory budget, one instance per model."""

    def __init__(self, registry: Registry, store: ModelStore, settings: Settings) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.RLock()
        self.records: dict[str, LoadRecord] = {}
        budget_mb = settings.model_memory_budget_mb or int((function_memory_mb() or 4096) * 0.6)
        self.budget_bytes = budget_mb << 20
        self.on_load: Callable[[str, float], None] | None = None

    def loaded(self) -> list[str]:
        """Aliases in memory, least recently used first."""
        return list(self._engines)

    def get(self, alias: str, task: Task | None = None) -> Engine:
        """The engine for ``alias`` (ModelNotFound / ModelNotReady when it cannot be had)."""
        spec = self.registry.get(alias, task=task)
        with self._lock:
            engine = self._engines.get(alias)
            if engine is not None and self._still_current(alias, engine):
                self._engines.move_to_end(alias)
                return engine
            return self._load(spec)

    def embedder(self, alias: str) -> Embedder:
        """The embeddings engine for ``alias`` (ModelNotFound if it is another task)."""
        engine = self.get(alias, Task.EMBEDDINGS)
        if not isinstance(engine, Embedder):
            raise _wrong_engine(alias, engine, "Embedder")
        return engine

    def classifier(self, alias: str) -> TextClassifier:
        """The text-classification engine for ``alias``."""
        engine = self.get(alias, Task.TEXT_CLASSIFICATION)
        if not isinstance(engine, TextClassifier):
            raise _wrong_engine(alias, engine, "TextClassifier")
        return engine

    def _still_current(self, alias: str, engine: Engine) -> bool:
        # a new revision published by warmup is picked up on the next request
        name = self.store.current_name(alias)
        return name is None or engine.model.path.name == name

    def _load(self, spec: ModelSpec) -> Engine:
        loader = LOADERS.get(spec.task)
        if loader is None:
            raise ModelNotReady(spec.alias, f"no engine for task {spec.task.value} in this image")
        started = time.perf_counter()
        try:
            model = self.store.resolve(spec.alias)
            engine = loader(spec, model, self.settings)
        except HflambdaError as exc:
            self.records[spec.alias] = LoadRecord(error=str(exc))
            raise
        except Exception as exc:  # onnxruntime/tokenizers failures on a bad file
            self.records[spec.alias] = LoadRecord(error=f"{type(exc).__name__}: {exc}")
            raise ModelNotReady(
                spec.alias, f"failed to load from the store: {type(exc).__name__}: {exc}"
            ) from exc
        load_ms = (time.perf_counter() - started) * 1000
        self.records[spec.alias] = LoadRecord(load_ms=load_ms)
        self._engines.pop(spec.alias, None)
        self._evict_for(int(engine.memory_bytes))
        self._engines[spec.alias] = engine
        if self.on_load:
            self.on_load(spec.alias, load_ms)
        return engine

    def _evict_for(self, incoming: int) -> None:
        while self._engines and self._used() + incoming > self.budget_bytes:
            self._engines.popitem(last=False)

    def _used(self) -> int:
        return sum(int(e.memory_bytes) for e in self._engines.values())

    def preload(self) -> dict[str, str | None]:
        """Load every ``preload`` model now; returns alias -> error (None when loaded).

        A model that is not warmed does not stop the process from starting: requests for
        it answer 503 with the reason until warmup publishes it.
        """
        result: dict[str, str | None] = {}
        for spec in self.registry:
            if spec.preload and not spec.is_remote:
                try:
                    self.get(spec.alias)
                    result[spec.alias] = None
                except HflambdaError as exc:
                    result[spec.alias] = str(exc)
        return result


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry from settings."""
    settings = get_settings()
    return load_registry(settings.registry, profile=settings.profile or None)


@lru_cache(maxsize=1)
def get_pool() -> ModelPool:
    """The process-wide model pool (one per process, shared by every request)."""
    settings = get_settings()
    return ModelPool(get_registry(), ModelStore(settings.model_store), settings)

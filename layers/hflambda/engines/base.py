"""The engine contract: a loaded model that answers one task."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from hflambda.store import PublishedModel

__all__ = ["ClassificationResult", "Embedder", "Engine", "TextClassifier"]


@runtime_checkable
class Engine(Protocol):
    """Anything loaded from the store for one alias."""

    alias: str
    model: PublishedModel

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size, for the pool's memory budget."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text encodes to (special tokens included)."""
        ...


@runtime_checkable
class Embedder(Engine, Protocol):
    """Texts to L2-normalised vectors."""

    dimensions: int
    max_tokens: int

    def embed(self, texts: list[str], *, truncate: bool = False) -> np.ndarray:
        """float32 array (len(texts), dimensions)."""
        ...


ClassificationResult = list[list[tuple[str, float]]]


@runtime_checkable
class TextClassifier(Engine, Protocol):
    """Texts to labels with scores."""

    labels: list[str]
    max_tokens: int

    def classify(
        self, texts: list[str], *, top_k: int | None = 1, truncate: bool = False
    ) -> ClassificationResult:
        """Per text, (label, score) pairs sorted by score, at most ``top_k`` (None: all)."""
        ...

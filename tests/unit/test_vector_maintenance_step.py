"""Warmup's scheduled vector maintenance: reported, never raised, bounded by time left."""

from __future__ import annotations

from pathlib import Path

import pytest

from hflambda.settings import Settings
from hflambda.warmup.service import maintain_vectors_step


def test_skipped_without_a_store(tmp_path: Path) -> None:
    result = maintain_vectors_step(Settings(vector_uri=str(tmp_path / "none")))
    assert result["status"] == "skipped" and "no vector store" in result["reason"]


def test_deferred_when_time_is_short(tmp_path: Path) -> None:
    result = maintain_vectors_step(Settings(vector_uri=str(tmp_path)), remaining_seconds=lambda: 5.0)
    assert result["status"] == "deferred"


def test_failure_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hflambda.vectors

    def broken(settings: Settings) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(hflambda.vectors, "maintain_vectors", broken)
    result = maintain_vectors_step(Settings(vector_uri=str(tmp_path)))
    assert result["status"] == "failed" and "disk full" in result["reason"]


def test_runs_on_an_empty_store(tmp_path: Path) -> None:
    result = maintain_vectors_step(Settings(vector_uri=str(tmp_path)))
    assert result["status"] == "done", result

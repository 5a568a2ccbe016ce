"""Warmup results: what happened to each model, as plain data the handler returns."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["CompileResult", "ModelResult", "ModelStatus", "WarmupResult"]


class ModelStatus(StrEnum):
    """Outcome of one model in a warmup run."""

    PUBLISHED = "published"  # a new revision is live
    CURRENT = "current"  # already live; nothing fetched
    CHECKED = "checked"  # remote model: its route answered
    FAILED = "failed"  # the previous revision (if any) stays live
    DEFERRED = "deferred"  # not started: too little time left in this invocation
    LOCKED = "locked"  # another warmup holds this alias


class ModelResult(BaseModel):
    """One model's outcome, with the reason when it did not publish."""

    alias: str
    status: ModelStatus
    revision: str | None = None
    live_revision: str | None = Field(default=None, description="What CURRENT names after this run.")
    reason: str | None = None
    error: str | None = Field(default=None, description="Error type code when failed.")
    timings: dict[str, float] = Field(default_factory=dict)
    bytes_downloaded: int = 0
    parity: dict[str, Any] = Field(default_factory=dict)
    removed: list[str] = Field(
        default_factory=list, description="Old revisions garbage-collected by this run."
    )


class WarmupResult(BaseModel):
    """A whole run: per-model results, plus counts."""

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    models: list[ModelResult] = Field(default_factory=list)
    gc: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no model failed (deferred and locked models are retried next run)."""
        return not any(m.status == ModelStatus.FAILED for m in self.models)

    def count(self, status: ModelStatus) -> int:
        """How many models ended with ``status``."""
        return sum(1 for m in self.models if m.status == status)


class CompileResult(BaseModel):
    """What a compiler produced in the output folder, for the manifest."""

    export: dict[str, Any]
    parity: dict[str, Any] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)

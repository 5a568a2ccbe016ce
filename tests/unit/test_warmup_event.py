"""The warmup event's ``models``: one alias or a list; anything else is a clear error in the result."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hflambda.errors import BadInput
from hflambda.warmup.service import models_from_event
from tests.fixtures.models import clear_caches, fresh_module


@pytest.mark.parametrize(
    ("event", "aliases"),
    [
        ({}, None),
        ({"models": None}, None),
        ({"models": []}, None),
        ({"models": "embed"}, ["embed"]),
        ({"models": ["embed", "chat", "embed"]}, ["embed", "chat"]),
        ("not a dict", None),
    ],
)
def test_models_accepts_one_alias_or_a_list(event: Any, aliases: list[str] | None) -> None:
    assert models_from_event(event) == aliases


@pytest.mark.parametrize("value", [3, {"embed": True}, ["embed", 1], [""], True])
def test_anything_else_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(BadInput, match='event "models" must be one alias or a list') as caught:
        models_from_event({"models": value})
    assert caught.value.field == "models"


def _context() -> Any:
    return SimpleNamespace(
        function_name="warmup",
        memory_limit_in_mb=3008,
        invoked_function_arn="arn:aws:lambda:us-east-1:1:function:warmup",
        aws_request_id="req-1",
        get_remaining_time_in_millis=lambda: 900_000,
    )


def test_handler_reports_a_bad_event_in_its_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    clear_caches()
    handler = fresh_module("functions.warmup.handler").handler
    result = handler({"models": 3}, _context())
    assert result["ok"] is False and result["models"] == []
    assert result["error"]["code"] == "bad_request" and "one alias or a list" in result["error"]["message"]
    unknown = handler({"models": "nope"}, _context())
    assert unknown["ok"] is False and unknown["error"]["code"] == "model_not_found"
    assert "'nope'" in unknown["error"]["message"] and "embed" in unknown["error"]["message"]
    clear_caches()

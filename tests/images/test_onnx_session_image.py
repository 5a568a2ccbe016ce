"""The predict image's onnxruntime sessions fit the CPUs the function really has.

Lambda gives a function a share of vCPUs (by memory); the host's core count is not what it
may use. Each case starts the real predict image under the RIE with a CPU limit (or none, on
this 2-CPU machine), lets the preloaded model load at init, and reads the engine's own
``onnx session created`` log line: intra-op threads = the CPUs allowed, one inter-op thread,
no spinning.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.images import events
from tests.images.conftest import Stage, WarmupRuns

HOST_CPUS = len(os.sched_getaffinity(0))


def session_lines(logs: str) -> list[dict[str, Any]]:
    """The engine's structured ``onnx session created`` records in the container's logs."""
    out = []
    for line in logs.splitlines():
        start = line.find("{")
        if start < 0 or "onnx session created" not in line:
            continue
        record = json.loads(line[start:])
        if record.get("message") == "onnx session created":
            out.append(record)
    return out


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ({}, HOST_CPUS),
        ({"cpus": 1.0}, 1),  # a CFS quota (cgroup cpu.max / cpu.cfs_quota_us)
        ({"cpuset": "0"}, 1),  # an affinity mask
    ],
    ids=["no-limit", "cpus-1", "cpuset-0"],
)
def test_onnx_sessions_use_the_cpus_the_function_has(
    stage: Stage, warmed: WarmupRuns, limit: dict[str, Any], expected: int
) -> None:
    assert warmed.scheduled.payload["ok"] is True, warmed.scheduled.raw[-2000:]
    assert not limit or expected < HOST_CPUS, "the limit must take CPUs away to prove anything"
    with stage.run("predict", **limit) as fn:
        health = fn.invoke(events.http_api("GET", "/health"))  # init: the preload model loads
        assert health.status == 200 and health.function_error is None, health.raw[-2000:]
        records = session_lines(fn.logs())
    assert [r["model"] for r in records] == ["embed"], records  # the registry's one preload model
    record = records[0]
    assert record["intra_op_threads"] == expected, record
    assert record["mode"] == "latency" and record["parallel_runs"] == 1, record  # predict: one run at a time
    assert record["inter_op_threads"] == 1, record
    assert record["intra_op_spinning"] is False and record["inter_op_spinning"] is False, record

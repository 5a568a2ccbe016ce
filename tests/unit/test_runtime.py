"""onnxruntime threads follow the CPUs the process may use, not the host's core count."""

from __future__ import annotations

from pathlib import Path

import pytest

from hflambda import runtime


def test_cgroup_quota_caps_affinity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(runtime, "_cgroup_cpu_quota", lambda: 2.0)
    assert runtime.available_cpus() == 2
    monkeypatch.setattr(runtime, "_cgroup_cpu_quota", lambda: None)
    assert runtime.available_cpus() == 8
    monkeypatch.setattr(runtime, "_cgroup_cpu_quota", lambda: 0.3)
    assert runtime.available_cpus() == 1


def test_cgroup_v2_file_is_parsed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("300000 100000\n")
    real_path = runtime.Path
    monkeypatch.setattr(runtime, "Path", lambda p: cpu_max if p == "/sys/fs/cgroup/cpu.max" else real_path(p))
    assert runtime._cgroup_cpu_quota() == 3.0
    cpu_max.write_text("max 100000\n")
    assert runtime._cgroup_cpu_quota() is None or runtime._cgroup_cpu_quota() != 3.0


def test_function_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
    assert runtime.function_memory_mb() == 3008
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    assert runtime.function_memory_mb() is None

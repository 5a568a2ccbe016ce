"""Facts about the process we run in: CPUs we may use, memory we were given."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_cpus", "function_memory_mb"]


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup v2 (cpu.max) or v1 (cfs quota) limit, if any."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def available_cpus() -> int:
    """CPUs this process may actually use: affinity mask, capped by the cgroup quota.

    Lambda gives a share of vCPUs proportional to memory; ``os.cpu_count()`` reports the
    host's cores, which oversubscribes threads.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return max(1, count)


def function_memory_mb() -> int | None:
    """The Lambda function's memory size, when running in Lambda."""
    value = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return int(value) if value and value.isdigit() else None

"""Shared benchmark plumbing: results file, statistics, subprocess timing."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results.json"
WORK = BENCH / ".work"


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save_section(name: str, data: dict[str, Any]) -> None:
    """Read-modify-write one section of bench/results.json (others belong to other benches)."""
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = {**data, "machine": machine()}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return statistics.median(values)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; returns (wall seconds incl. startup, stdout)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], env=full_env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{out.stderr[-3000:]}")
    return elapsed, out.stdout


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def report_peer(cold_s: float, documents: int, index_s: float, queries: list[str], search: Any) -> None:
    """Time ``search(query) -> [doc ids]`` per query and print a peer's result line (JSON).

    Shared by every peer script, including txtai's, which runs in its own venv: this module
    imports the standard library only.
    """
    latencies, top = [], {}
    for i, query in enumerate(queries):
        started = time.perf_counter()
        ids = search(query)
        latencies.append((time.perf_counter() - started) * 1000)
        top[str(i)] = ids
    print(
        json.dumps(
            {
                "cold_start_s": cold_s,
                "index_docs_per_s": documents / index_s,
                "search_p50_ms": percentile(latencies, 50),
                "search_p95_ms": percentile(latencies, 95),
                "peak_rss_mb": peak_rss_mb(),
                "top10": top,
            }
        )
    )

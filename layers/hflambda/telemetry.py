"""Powertools logger, metrics and tracer shared by every function (nothing hand-rolled)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["MetricUnit", "logger", "metrics", "record_inference", "tracer"]

NAMESPACE = "hflambda"

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
tracer = Tracer()


@contextmanager
def record_inference(alias: str, batch: int) -> Iterator[None]:
    """Time one inference call into the InferenceMs and BatchSize metrics."""
    started = time.perf_counter()
    yield
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=batch)

"""Powertools logger, metrics and tracer shared by every function (nothing hand-rolled)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["MetricUnit", "logger", "metrics", "record_inference", "tracer"]

NAMESPACE = "hflambda"
F = TypeVar("F", bound=Callable[..., Any])

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)


class _LazyTracer:
    """Powertools Tracer, created only when tracing is on.

    Importing the X-Ray SDK costs ~0.2-0.6 s of cold start even with tracing disabled, so
    with ``POWERTOOLS_TRACE_DISABLED=true`` (CDK's default unless tracing is enabled in
    context) handlers are left undecorated and the SDK is never imported.
    """

    @staticmethod
    def enabled() -> bool:
        return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() not in ("1", "true")

    @cached_property
    def _tracer(self) -> Any:
        from aws_lambda_powertools import Tracer

        return Tracer()

    def capture_lambda_handler(self, **options: Any) -> Callable[[F], F]:
        """``Tracer.capture_lambda_handler`` when tracing is on, else the handler unchanged."""
        if not self.enabled():
            return lambda handler: handler
        return self._tracer.capture_lambda_handler(**options)  # type: ignore[no-any-return]


tracer = _LazyTracer()


@contextmanager
def record_inference(alias: str, batch: int) -> Iterator[None]:
    """Time one inference call into the InferenceMs and BatchSize metrics."""
    started = time.perf_counter()
    yield
    metrics.add_metric(
        name="InferenceMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
    )
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=batch)

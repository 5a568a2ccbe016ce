"""The SQS event source mapping, as the template declares it.

``MaximumConcurrency`` pollers share the queue (Lambda runs at most that many concurrent
invocations for the mapping), each gathering up to ``BatchSize`` messages over
``MaximumBatchingWindowInSeconds`` and invoking the function's pool, which starts a new
container only when every running one is busy. With ``ReportBatchItemFailures`` the records
the function lists in ``batchItemFailures`` stay in the queue and everything else is deleted;
a function error (or, without ``ReportBatchItemFailures``, any listed failure) returns the
whole batch. Messages come back after the queue's visibility timeout and go to the DLQ by the
queue's own redrive policy (moto applies ``maxReceiveCount`` on receive, as SQS does).

Batching and deletion are :class:`hflambda.poller.Poller`'s (the same semantics ``hflambda
dev`` uses); what this module adds is the template's settings and the containers behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hflambda.poller import Poller
from rehearsal.functions import FunctionPool
from rehearsal.template import EventSourceSpec

__all__ = ["EventSourceMapping", "FunctionError"]


class FunctionError(RuntimeError):
    """The function's invocation failed (Lambda's X-Amz-Function-Error): the whole batch returns."""


@dataclass
class EventSourceMapping:
    spec: EventSourceSpec
    queue_url: str
    pool: FunctionPool
    sqs: Any
    pollers: list[Poller] = field(default_factory=list)

    def _invoke(self, event: dict[str, Any], context: Any) -> Any:
        result = self.pool.invoke(event)
        if result.function_error:
            raise FunctionError(f"{result.function_error}: {result.payload[:500].decode('utf-8', 'replace')}")
        document = result.json()
        if not self.spec.report_batch_item_failures and isinstance(document, dict):
            # without ReportBatchItemFailures Lambda ignores the response: success deletes all
            return None
        return document

    def start(self) -> EventSourceMapping:
        if not self.spec.enabled:
            return self
        count = int(self.spec.max_concurrency or self.pool.max_instances)
        for _ in range(count):
            poller = Poller(
                self.queue_url,
                self._invoke,
                sqs_client=self.sqs,
                batch_size=self.spec.batch_size,
                batching_window=float(self.spec.batching_window_s),
                wait_seconds=1,
                function_timeout=float(self.spec.function.timeout_s),
            )
            self.pollers.append(poller.start())
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            poller._stop.set()
        for poller in self.pollers:
            poller.stop(timeout=self.spec.function.timeout_s + 10)
        self.pollers = []

    @property
    def stats(self) -> dict[str, int]:
        totals = {"invocations": 0, "records": 0, "deleted": 0, "failed_records": 0, "function_errors": 0}
        for poller in self.pollers:
            for key in totals:
                totals[key] += int(getattr(poller.stats, key))
        return totals

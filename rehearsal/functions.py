"""Running the template's functions, and Lambda's invoke semantics around them.

An *instance* is one execution environment: a container of the function's image under the
Lambda Runtime Interface Emulator (``containers.rie``), taking one invocation at a time, as
Lambda does. A :class:`FunctionPool` holds a function's instances: it starts one when every
instance is busy and the function's concurrency allows it (``ReservedConcurrentExecutions``,
or the event source's ``MaximumConcurrency``), otherwise the invocation waits, like a
throttled one that a caller retries.

:func:`invoke_async` is Lambda's asynchronous invocation (``InvocationType: Event``): the
caller gets 202 at once; on a function error Lambda retries up to ``MaximumRetryAttempts`` of
the ``EventInvokeConfig`` whose qualifier is *the one invoked* (default 2), which is how an
after-deploy trigger on a published version escapes a no-retry config on ``$LATEST``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rehearsal.template import AsyncInvokeConfig, FunctionSpec

__all__ = [
    "RESPONSE_LIMIT_BYTES",
    "AsyncRecord",
    "FunctionPool",
    "Instance",
    "Invocation",
    "invoke_async",
]

# Lambda's synchronous invocation payload limits: 6 MB request and response.
REQUEST_LIMIT_BYTES = 6 * 1024 * 1024
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
DEFAULT_ASYNC_RETRIES = 2  # Lambda's default MaximumRetryAttempts for asynchronous invocations


@dataclass
class Invocation:
    """The outcome of one invoke: the raw payload and, if it failed, Lambda's error kind."""

    payload: bytes
    function_error: str | None = None  # "Unhandled", "Function.ResponseSizeTooLarge", "Sandbox.Timedout", ...
    duration_s: float = 0.0

    def json(self) -> Any:
        return json.loads(self.payload or b"null")


class Instance(Protocol):
    """One execution environment of a function."""

    def invoke(self, event: dict[str, Any], *, timeout: float) -> Invocation: ...

    def close(self) -> None: ...


InstanceFactory = Callable[[FunctionSpec, int], Instance]


def classify_payload(payload: bytes) -> str | None:
    """Lambda's ``X-Amz-Function-Error`` for an RIE reply: the runtime's error document
    (``errorMessage``/``errorType``) means a function error; anything else is a result."""
    if len(payload) > RESPONSE_LIMIT_BYTES:
        return "Function.ResponseSizeTooLarge"
    try:
        document = json.loads(payload or b"null")
    except ValueError:
        return None
    if (
        isinstance(document, dict)
        and "errorMessage" in document
        and set(document)
        <= {
            "errorMessage",
            "errorType",
            "stackTrace",
            "requestId",
        }
    ):
        if "timed out" in str(document.get("errorMessage", "")).lower():
            return "Sandbox.Timedout"
        return "Unhandled"
    return None


@dataclass
class FunctionPool:
    """The execution environments of one function."""

    spec: FunctionSpec
    factory: InstanceFactory
    max_instances: int
    idle: list[Instance] = field(default_factory=list)
    started: int = 0
    invocations: int = 0
    errors: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _all: list[Instance] = field(default_factory=list)

    def _acquire(self, wait: float) -> Instance:
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                if self.idle:
                    return self.idle.pop()
                if self.started < self.max_instances:
                    self.started += 1
                    number = self.started
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.spec.name}: all {self.max_instances} instance(s) busy")
                self._lock.wait(left)
        try:
            instance = self.factory(self.spec, number)
        except BaseException:
            with self._lock:
                self.started -= 1
                self._lock.notify()
            raise
        with self._lock:
            self._all.append(instance)
        return instance

    def _release(self, instance: Instance) -> None:
        with self._lock:
            self.idle.append(instance)
            self._lock.notify()

    def invoke(self, event: dict[str, Any], *, wait: float = 900.0) -> Invocation:
        """Invoke on a free instance (starting one if allowed), waiting up to ``wait`` s for one."""
        instance = self._acquire(wait)
        started = time.monotonic()
        try:
            result = instance.invoke(event, timeout=self.spec.timeout_s + 5.0)
        except BaseException:
            # an instance that failed mid-invoke is replaced, not reused
            with self._lock:
                self.started -= 1
                self._all.remove(instance)
                self._lock.notify()
            instance.close()
            self.errors += 1
            raise
        result.duration_s = time.monotonic() - started
        self.invocations += 1
        if result.function_error:
            self.errors += 1
        self._release(instance)
        return result

    def close(self) -> None:
        with self._lock:
            instances, self._all, self.idle = list(self._all), [], []
            self.started = 0
        for instance in instances:
            instance.close()


@dataclass
class AsyncRecord:
    """One asynchronous invocation and its attempts (what the rehearsal reports)."""

    function: str
    qualifier: str
    source: str
    attempts: list[Invocation] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    max_attempts: int = 1

    @property
    def succeeded(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].function_error is None


def retries_for(configs: dict[tuple[str, str], AsyncInvokeConfig], spec: FunctionSpec, qualifier: str) -> int:
    """MaximumRetryAttempts that applies to ``qualifier`` (Lambda matches the config by qualifier)."""
    config = configs.get((spec.name, qualifier))
    return config.maximum_retry_attempts if config else DEFAULT_ASYNC_RETRIES


def invoke_async(
    pool: FunctionPool,
    event: dict[str, Any],
    *,
    qualifier: str,
    configs: dict[tuple[str, str], AsyncInvokeConfig] | None,
    source: str,
    retry_delays: tuple[float, ...] = (60.0, 120.0),
    on_done: Callable[[AsyncRecord], None] | None = None,
) -> AsyncRecord:
    """Queue ``event`` for ``pool`` as Lambda's async invoke does; returns at once.

    Retries follow Lambda: up to the qualifier's MaximumRetryAttempts, 1 min then 2 min apart
    (``configs=None``: a synchronous invocation, never retried).
    """
    retries = retries_for(configs, pool.spec, qualifier) if configs is not None else 0
    record = AsyncRecord(
        function=pool.spec.name, qualifier=qualifier, source=source, max_attempts=1 + retries
    )

    def run() -> None:
        try:
            for attempt in range(record.max_attempts):
                if attempt:
                    time.sleep(retry_delays[min(attempt - 1, len(retry_delays) - 1)])
                try:
                    result = pool.invoke(event)
                except Exception as exc:
                    result = Invocation(
                        json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}).encode(),
                        "Unhandled",
                    )
                record.attempts.append(result)
                if result.function_error is None:
                    break
        finally:
            record.done.set()
            if on_done is not None:
                on_done(record)

    threading.Thread(target=run, name=f"async-{pool.spec.function}", daemon=True).start()
    return record

"""``make soak``: the whole local stack under load and faults, bounded, loopback only.

For SOAK_SECONDS (default 150) SOAK_CLIENTS (default 4) concurrent clients mix embeddings,
predict, search, document upserts/deletes and chat completions against ``hflambda dev``
while a fault injector kills the poller (SIGKILL; the supervisor restarts it), kills the
API process once (announced restart window), and publishes a new classifier revision
through warmup mid-run. Then the queue is drained and the books are checked:

- zero lost documents: every acknowledged upsert not later deleted is stored and
  searchable; every acknowledged delete is gone;
- zero 5xx outside the announced restart window; every error response well-formed;
- latency p50/p95/p99 per endpoint and throughput, written to bench/soak.json.

Exit code 1 if any check fails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import BENCH, REPO, WORK, machine, percentile
from hflambda.devstack import DevConfig, DevStack, free_port

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "150"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "4"))
DRAIN_SECONDS = 150.0
WORDS = "lambda onnx warmup index vector search queue token model revision store latency cache shard batch".split()
ERROR_KEYS = {"type", "message", "param", "details", "request_id"}
# What each soak client does, drawn with these weights (the order is the draw's: keep it).
OPERATION_WEIGHTS = {"embed": 25, "predict": 15, "search": 20, "upsert": 20, "delete": 5, "chat": 15}


@dataclass
class Books:
    """Everything the clients saw, for the final accounting."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    transport_errors: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[tuple[str, str], str | None] = field(
        default_factory=dict
    )  # (user, doc) -> text or None (deleted)
    # outcomes an unacknowledged request may still have caused (the API died after sending)
    uncertain: dict[tuple[str, str], set[str | None]] = field(default_factory=lambda: defaultdict(set))
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ClientState:
    """One soak client: its seeded draws, its user, the documents it has written so far."""

    number: int
    rng: random.Random
    user: str
    docs: list[str] = field(default_factory=list)
    counter: int = 0


@dataclass
class Window:
    """An announced fault window: 5xx and connection errors inside it are expected."""

    name: str
    start: float
    end: float = float("inf")


class Soak:
    """Clients, fault injector and the final accounting around one DevStack."""

    def __init__(self, stack: DevStack, token: Any) -> None:
        self.stack = stack
        self.api = stack.info["api"]
        self.token = token
        self.books = Books()
        self.windows: list[Window] = []
        self.events: list[dict[str, Any]] = []
        self.stop = threading.Event()

    # --- clients ------------------------------------------------------------------------

    def request(
        self, client: httpx.Client, endpoint: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            with self.books.lock:
                self.books.transport_errors.append(
                    {"endpoint": endpoint, "at": time.time(), "error": f"{type(exc).__name__}: {exc}"}
                )
            time.sleep(0.25)  # a client backs off instead of spinning on a refused connection
            return None
        at = time.time()
        elapsed = (time.perf_counter() - started) * 1000
        with self.books.lock:
            self.books.latencies[endpoint].append(elapsed)
            self.books.statuses[endpoint][response.status_code] += 1
            if response.status_code >= 400:
                try:
                    body = response.json()
                    ok = set(body) == {"error"} and set(body["error"]) >= ERROR_KEYS
                except ValueError:
                    ok = False
                if not ok:
                    self.books.malformed.append(
                        {"endpoint": endpoint, "status": response.status_code, "body": response.text[:300]}
                    )
            if response.status_code >= 500:
                self.books.server_errors.append(
                    {
                        "endpoint": endpoint,
                        "status": response.status_code,
                        "at": at,
                        "body": response.text[:300],
                    }
                )
        return response

    def client_loop(self, number: int) -> None:
        state = ClientState(number=number, rng=random.Random(number), user=f"soak-user-{number}")
        headers = {"authorization": f"Bearer {self.token(state.user)}"}
        operations = {
            "embed": self.embed,
            "predict": self.predict,
            "search": self.search,
            "upsert": self.upsert,
            "delete": self.delete,
            "chat": self.chat,
        }
        with httpx.Client(base_url=self.api, headers=headers, timeout=40) as client:
            while not self.stop.is_set():
                op = state.rng.choices(list(OPERATION_WEIGHTS), weights=list(OPERATION_WEIGHTS.values()))[0]
                operations[op](client, state)

    # --- the client operations (one request each; ``state`` is the calling client's) --------

    def embed(self, client: httpx.Client, state: ClientState) -> None:
        rng = state.rng
        self.request(
            client,
            "POST /v1/embeddings",
            "POST",
            "/v1/embeddings",
            json={
                "input": [" ".join(rng.choices(WORDS, k=8)) for _ in range(rng.randint(1, 8))],
                "model": rng.choice(["embed", "embed-int8"]),
            },
        )

    def predict(self, client: httpx.Client, state: ClientState) -> None:
        self.request(
            client,
            "POST /v1/models/{alias}/predict",
            "POST",
            "/v1/models/classify/predict",
            json={"inputs": [" ".join(state.rng.choices(WORDS, k=6))], "top_k": 2},
        )

    def search(self, client: httpx.Client, state: ClientState) -> None:
        self.request(
            client,
            "POST /v1/search",
            "POST",
            "/v1/search",
            json={"query": " ".join(state.rng.choices(WORDS, k=4)), "top_k": 5},
        )

    def upsert(self, client: httpx.Client, state: ClientState) -> None:
        rng, number, docs = state.rng, state.number, state.docs
        batch = []
        for _ in range(rng.randint(1, 5)):
            if docs and rng.random() < 0.3:
                doc_id = rng.choice(docs)  # an update of an existing document
            else:
                state.counter += 1
                doc_id = f"doc-{number}-{state.counter}"
                docs.append(doc_id)
            text = f"{doc_id} " + " ".join(rng.choices(WORDS, k=rng.randint(5, 60)))
            batch.append({"id": doc_id, "text": text, "metadata": {"client": number}})
        batch = list({d["id"]: d for d in batch}.values())  # one version per document per request
        response = self.request(
            client, "POST /v1/documents", "POST", "/v1/documents", json={"documents": batch}
        )
        by_id = {d["id"]: d["text"] for d in batch}
        user = state.user
        with self.books.lock:
            if response is not None and response.status_code == 202:
                for status in response.json()["documents"]:
                    if status["status"] == "queued":
                        self.books.expected[(user, status["id"])] = by_id[status["id"]]
                        self.books.uncertain.pop((user, status["id"]), None)
            elif response is None or response.status_code >= 500:
                for doc_id, text in by_id.items():
                    self.books.uncertain[(user, doc_id)].add(text)

    def delete(self, client: httpx.Client, state: ClientState) -> None:
        if not state.docs:
            return
        doc_id = state.rng.choice(state.docs)
        response = self.request(client, "DELETE /v1/documents/{id}", "DELETE", f"/v1/documents/{doc_id}")
        user = state.user
        with self.books.lock:
            if response is not None and response.status_code == 202:
                self.books.expected[(user, doc_id)] = None
                self.books.uncertain.pop((user, doc_id), None)
            elif response is None or response.status_code >= 500:
                self.books.uncertain[(user, doc_id)].add(None)

    def chat(self, client: httpx.Client, state: ClientState) -> None:
        schema = {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        }
        self.request(
            client,
            "POST /v1/chat/completions",
            "POST",
            "/v1/chat/completions",
            json={
                "model": "chat",
                "max_tokens": 24,
                "messages": [{"role": "user", "content": " ".join(state.rng.choices(WORDS, k=6))}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}},
            },
        )

    # --- faults ---------------------------------------------------------------------------

    def event(self, name: str, **detail: Any) -> None:
        self.events.append({"at": time.time(), "event": name, **detail})
        print(f"[soak] {name} {detail}", flush=True)

    def kill(self, name: str) -> int:
        child = self.stack.children[name]
        assert child.process is not None
        pid = child.process.pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("API did not come back after the restart")

    def faults(self, started: float) -> None:
        plan = [
            (0.2, self.restart_poller),
            (0.4, self.kill_api),
            (0.6, self.publish_revision),
            (0.75, self.restart_poller),
        ]
        for fraction, action in plan:
            if self.stop.wait(max(0.0, started + fraction * SOAK_SECONDS - time.time())):
                return
            action()

    def restart_poller(self) -> None:
        self.event("poller killed (SIGKILL); the supervisor restarts it", pid=self.kill("poller"))

    def kill_api(self) -> None:
        window = Window("api restart", time.time())
        self.windows.append(window)
        self.event("API killed (SIGKILL); restart window opens", pid=self.kill("api"))
        self.wait_healthy()
        window.end = time.time() + 1.0
        self.event("API healthy again; restart window closes", seconds=round(window.end - window.start, 2))

    def publish_revision(self) -> None:
        registry = WORK / "soak-registry.toml"
        registry.write_text(
            (REPO / "models.toml")
            .read_text()
            .replace(
                'source = "train://sentiment-minilm"',
                'source = "train://sentiment-minilm"\nrevision = "soak-v2"',
            )
        )
        env = {**self.stack.env, "HFLAMBDA_REGISTRY": str(registry)}
        import subprocess

        out = subprocess.run(
            [sys.executable, "-m", "hflambda.cli", "warmup", "classify", "--json"],
            env=env,
            capture_output=True,
            text=True,
        )
        result = (
            json.loads(out.stdout)["models"][0]
            if out.stdout.strip()
            else {"status": "failed", "reason": out.stderr[-500:]}
        )
        self.event(
            "new classify revision published through warmup",
            status=result["status"],
            revision=result.get("live_revision"),
        )

    # --- accounting ---------------------------------------------------------------------

    def drain(self) -> float:
        import boto3

        env = self.stack.env
        sqs = boto3.client(
            "sqs",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        started, quiet_since = time.monotonic(), None
        while time.monotonic() - started < DRAIN_SECONDS:
            attrs = sqs.get_queue_attributes(
                QueueUrl=env["HFLAMBDA_INDEX_QUEUE_URL"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            pending = int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            )
            if pending == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 3:
                    break
            else:
                quiet_since = None
            time.sleep(1)
        dlq = sqs.get_queue_attributes(
            QueueUrl=env["HFLAMBDA_DLQ_URL"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        self.dlq_depth = int(dlq["ApproximateNumberOfMessages"])
        return time.monotonic() - started

    def check_documents(self) -> dict[str, Any]:
        from hflambda.settings import Settings
        from hflambda.vectors import open_vector_store

        # the stack's vector backend (local folder, or --vectors aws on moto) as its functions see it
        vector_env = {
            k[len("HFLAMBDA_") :].lower(): v
            for k, v in self.stack.env.items()
            if k.startswith("HFLAMBDA_VECTOR_")
        }
        store = open_vector_store(Settings(**vector_env))
        lost, resurrected, stale, present, uncertain_outcomes = [], [], [], 0, 0
        for (user, doc_id), text in sorted(self.books.expected.items()):
            stored = store.get_document(user, doc_id)
            alive = stored is not None and not stored.deleted and stored.chunks > 0
            allowed = self.books.uncertain.get((user, doc_id), set())
            actual = (stored.text if stored is not None else None) if alive else None
            if actual != text and actual in allowed:
                uncertain_outcomes += 1  # a request whose answer was lost did land: not a loss
                continue
            if text is None:
                if alive:
                    resurrected.append(f"{user}/{doc_id}")
            elif not alive:
                lost.append(f"{user}/{doc_id}")
            elif stored is not None and stored.text != text:
                stale.append(f"{user}/{doc_id}")
            else:
                present += 1
        # and searchable through the API, for a sample, by the caller's own token
        sample = [(u, d, t) for (u, d), t in self.books.expected.items() if t is not None][:40]
        unsearchable = []
        for user, doc_id, text in sample:
            response = httpx.post(
                f"{self.api}/v1/search",
                json={"query": text, "top_k": 10},
                headers={"authorization": f"Bearer {self.token(user)}"},
                timeout=30,
            )
            if response.status_code != 200 or doc_id not in [hit["id"] for hit in response.json()["data"]]:
                unsearchable.append(f"{user}/{doc_id}")
        return {
            "acknowledged": len(self.books.expected),
            "present": present,
            "unacknowledged_but_applied": uncertain_outcomes,
            "lost": lost,
            "resurrected": resurrected,
            "stale_text": stale,
            "search_sample": len(sample),
            "unsearchable": unsearchable,
        }

    def in_window(self, at: float) -> bool:
        return any(w.start <= at <= w.end for w in self.windows)

    def report(self, duration: float, drain_s: float, documents: dict[str, Any]) -> dict[str, Any]:
        books = self.books
        unexplained = [e for e in books.server_errors if not self.in_window(e["at"])]
        transport_outside = [e for e in books.transport_errors if not self.in_window(e["at"])]
        endpoints = {}
        for endpoint, values in sorted(books.latencies.items()):
            endpoints[endpoint] = {
                "requests": len(values),
                "per_s": round(len(values) / duration, 2),
                "p50_ms": round(percentile(values, 50), 1),
                "p95_ms": round(percentile(values, 95), 1),
                "p99_ms": round(percentile(values, 99), 1),
                "statuses": {str(k): v for k, v in sorted(books.statuses[endpoint].items())},
            }
        total = sum(len(v) for v in books.latencies.values())
        checks = {
            "zero lost documents": not documents["lost"]
            and not documents["resurrected"]
            and not documents["stale_text"],
            "sampled documents searchable": not documents["unsearchable"],
            "zero unexplained 5xx": not unexplained,
            "no connection errors outside the restart window": not transport_outside,
            "every error response well-formed": not books.malformed,
            "DLQ empty": self.dlq_depth == 0,
        }
        return {
            "seconds": round(duration, 1),
            "clients": CLIENTS,
            "requests": total,
            "throughput_per_s": round(total / duration, 2),
            "endpoints": endpoints,
            "documents": documents,
            "drain_seconds": round(drain_s, 1),
            "dlq_depth": self.dlq_depth,
            "restart_windows": [{"name": w.name, "seconds": round(w.end - w.start, 2)} for w in self.windows],
            "server_errors": {
                "total": len(books.server_errors),
                "in_windows": len(books.server_errors) - len(unexplained),
                "unexplained": unexplained[:20],
            },
            "transport_errors": {
                "total": len(books.transport_errors),
                "outside_windows": transport_outside[:20],
            },
            "malformed_errors": books.malformed[:20],
            "events": self.events,
            "checks": checks,
            "passed": all(checks.values()),
            "machine": machine(),
        }


def main() -> int:
    """Run the soak; write bench/soak.json; exit 1 if a check fails."""
    state = WORK / "soak"
    store = WORK / "soak-store"  # kept between runs: warming it is not what we measure
    stack = DevStack(
        DevConfig(
            state=state,
            store=store,
            registry=REPO / "models.toml",
            port=free_port(),
            issuer_port=free_port(),
            reset=True,
        ),
        say=lambda s: print(f"[dev] {s}", flush=True),
    )
    try:
        stack.start()
        issuer = stack.issuer

        def token(user: str) -> str:
            return str(issuer.token(user, ttl=3600))

        soak = Soak(stack, token)
        supervisor = threading.Thread(target=stack.supervise, daemon=True)
        supervisor.start()
        print(f"[soak] {CLIENTS} clients for {SOAK_SECONDS:.0f} s against {soak.api}", flush=True)
        started = time.time()
        clients = [threading.Thread(target=soak.client_loop, args=(n,), daemon=True) for n in range(CLIENTS)]
        for thread in clients:
            thread.start()
        injector = threading.Thread(target=soak.faults, args=(started,), daemon=True)
        injector.start()
        time.sleep(SOAK_SECONDS)
        soak.stop.set()
        for thread in clients:
            thread.join(60)
        injector.join(120)
        duration = time.time() - started
        print("[soak] load done; draining the index queue", flush=True)
        drain_s = soak.drain()
        documents = soak.check_documents()
        report = soak.report(duration, drain_s, documents)
    finally:
        stack.stop()
    (BENCH / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, ok in report["checks"].items():
        print(f"[soak] {'PASS' if ok else 'FAIL'} {name}")
    print(
        f"[soak] {report['requests']} requests, {report['throughput_per_s']}/s; documents {documents['present']}/{documents['acknowledged']} present or correctly deleted; report: bench/soak.json"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

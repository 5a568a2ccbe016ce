"""``hflambda dev``: the whole system on one machine, as the Lambda images run it.

One supervisor process owns everything and cleans up on Ctrl-C:

- a moto server on loopback standing in for SQS (index queue + DLQ with a redrive policy),
  S3 and Secrets Manager (thread);
- the dev token issuer (RSA key + JWKS on loopback) the predict app verifies against (thread);
- warmup of the registry into the local store (a child process: the only one with torch);
- the predict app on uvicorn (child process, restarted if it dies);
- the SQS poller feeding ``functions.index.handler.handler`` (child process, restarted if it dies).

The store and the vector folder persist across restarts; moto state is rebuilt each start.
``.hflambda/dev.json`` records URLs, ports and pids for ``hflambda demo`` and the soak test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Child", "DevConfig", "DevStack", "create_index_queues", "free_port"]

QUEUE_NAME = "hflambda-index"
MAX_RECEIVE_COUNT = 3
VISIBILITY_TIMEOUT = 30


def create_index_queues(
    sqs: Any, name: str, *, visibility_timeout: int, max_receive_count: int
) -> tuple[str, str]:
    """An index queue and its DLQ with a redrive policy, as the CDK stack creates them.

    Returns ``(queue_url, dlq_url)``; ``sqs`` is a boto3 SQS client (moto locally).
    """
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    return str(queue_url), str(dlq_url)


def create_aws_vectors(
    endpoint: str,
    *,
    dimensions: int = 384,
    bucket: str = "hflambda-vectors",
    index: str = "chunks",
    table: str = "hflambda-catalogue",
) -> dict[str, str]:
    """Create the S3 Vectors bucket + index and the DynamoDB catalogue table on ``endpoint``
    (a moto server from ``hflambda.s3vectors_fake.start_server``) as CDK does; returns the
    ``HFLAMBDA_VECTOR_*`` settings that make the functions use them."""
    import boto3

    from hflambda.vectors.aws import create_resources

    options = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    create_resources(
        boto3.client("s3vectors", **options),
        boto3.client("dynamodb", **options),
        bucket=bucket,
        index=index,
        table=table,
        dimensions=dimensions,
    )
    return {
        "HFLAMBDA_VECTOR_BACKEND": "aws",
        "HFLAMBDA_VECTOR_BUCKET": bucket,
        "HFLAMBDA_VECTOR_INDEX": index,
        "HFLAMBDA_VECTOR_TABLE": table,
    }


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class DevConfig:
    """Where the local stack lives and listens."""

    state: Path = Path(".hflambda")
    store: Path | None = None
    registry: Path = Path("models.toml")
    host: str = "127.0.0.1"
    port: int = 8000
    issuer_port: int = 8001
    moto_port: int = 0
    warm: bool = True
    poller: bool = True
    reset: bool = False
    vectors: str = "local"
    """``local`` (LanceDB in ``vectors_path``) or ``aws`` (S3 Vectors + DynamoDB on moto with the QueryVectors fake)."""
    vector_dimensions: int = 384
    """Dimension of the S3 Vectors index ``--vectors aws`` creates (the default embedding model's size)."""

    @property
    def store_path(self) -> Path:
        """The model store folder."""
        return (self.store or self.state / "models").resolve()

    @property
    def vectors_path(self) -> Path:
        """The LanceDB folder."""
        return (self.state / "vectors").resolve()


@dataclass
class Child:
    """A supervised child process, restarted when it dies unexpectedly."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        """Start (or restart) the process, appending its output to its log file."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.started_at = time.time()

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class DevStack:
    """Start, supervise and stop the local stack."""

    def __init__(self, config: DevConfig, *, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.children: dict[str, Child] = {}
        self.moto: Any = None
        self.issuer: Any = None
        self.env: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self._stopping = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Bring everything up; returns the summary written to dev.json."""
        cfg = self.config
        if cfg.reset:
            self.reset()
        cfg.state.mkdir(parents=True, exist_ok=True)
        self._start_moto()
        self._start_issuer()
        self.env = self._child_env()
        warmed: dict[str, Any] = {}
        if cfg.warm:
            warmed = self.warm()
        api_argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "functions.predict.app:app",
            "--host",
            cfg.host,
            "--port",
            str(cfg.port),
            "--log-level",
            "warning",
        ]
        self.children["api"] = Child("api", api_argv, self.env, cfg.state / "logs" / "api.log")
        if cfg.poller:
            poll_argv = [
                sys.executable,
                "-m",
                "hflambda.poller",
                "--queue-url",
                self.env["HFLAMBDA_INDEX_QUEUE_URL"],
                "--handler",
                "functions.index.handler.handler",
            ]
            self.children["poller"] = Child("poller", poll_argv, self.env, cfg.state / "logs" / "poller.log")
        for child in self.children.values():
            child.start()
        self.wait_ready()
        self.info = {
            "api": f"http://{cfg.host}:{cfg.port}",
            "issuer": self.issuer.issuer,
            "audience": self.issuer.audience,
            "moto": self.env["AWS_ENDPOINT_URL"],
            "queue_url": self.env["HFLAMBDA_INDEX_QUEUE_URL"],
            "dlq_url": self.env["HFLAMBDA_DLQ_URL"],
            "store": str(cfg.store_path),
            "vectors": str(cfg.vectors_path),
            "registry": str(cfg.registry.resolve()),
            "logs": str((cfg.state / "logs").resolve()),
            "pids": {name: c.process.pid for name, c in self.children.items() if c.process},
            "supervisor_pid": os.getpid(),
            "env": {k: v for k, v in self.env.items() if k.startswith(("HFLAMBDA_", "AWS_"))},
            "models": warmed,
        }
        (cfg.state / "dev.json").write_text(json.dumps(self.info, indent=2))
        return self.info

    def reset(self) -> None:
        """Wipe local state: store, vectors, logs, dev.json (the dev signing key is kept)."""
        cfg = self.config
        for path in (cfg.store_path, cfg.vectors_path, cfg.state / "logs", cfg.state / "dev.json"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def supervise(self, poll: float = 0.5) -> None:
        """Restart children that die until ``stop()``; a dying child is logged, not fatal."""
        while not self._stopping.wait(poll):
            for child in self.children.values():
                if not child.alive() and not self._stopping.is_set():
                    code = child.process.returncode if child.process else None
                    child.history.append({"at": time.time(), "exit": code})
                    child.restarts += 1
                    self.say(f"{child.name} exited with {code}; restarting (see {child.log})")
                    time.sleep(min(5.0, 0.5 * child.restarts))
                    child.start()

    def stop(self) -> None:
        """Stop children, the issuer and moto; frees every port."""
        self._stopping.set()
        for child in self.children.values():
            child.stop()
        if self.issuer is not None:
            self.issuer.stop()
        if self.moto is not None:
            self.moto.stop()
        dev_json = self.config.state / "dev.json"
        if dev_json.exists():
            dev_json.unlink()

    # --- pieces ----------------------------------------------------------------------------

    def _start_moto(self) -> None:
        import logging

        from hflambda.s3vectors_fake import start_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines in the console
        # moto with QueryVectors added, so --vectors aws runs the AWS vector backend locally
        self.moto, self.moto_url = start_server(self.config.host, self.config.moto_port)

    def _start_issuer(self) -> None:
        from hflambda.auth.devissuer import DevIssuer

        self.issuer = DevIssuer(self.config.state / "dev-issuer")
        self.issuer.start(host=self.config.host, port=self.config.issuer_port)

    def _aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def _create_queues(self) -> tuple[str, str]:
        import boto3

        sqs = boto3.client(
            "sqs",
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        return create_index_queues(
            sqs, QUEUE_NAME, visibility_timeout=VISIBILITY_TIMEOUT, max_receive_count=MAX_RECEIVE_COUNT
        )

    def _vector_env(self) -> dict[str, str]:
        """The vector backend's settings; for ``aws``, its bucket, index and table on moto."""
        if self.config.vectors != "aws":
            return {"HFLAMBDA_VECTOR_BACKEND": "local"}
        return create_aws_vectors(self.moto_url, dimensions=self.config.vector_dimensions)

    def _child_env(self) -> dict[str, str]:
        cfg = self.config
        queue_url, dlq_url = self._create_queues()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HFLAMBDA_")}
        env.update(self._aws_env())
        env.update(
            {
                "HFLAMBDA_MODEL_STORE": str(cfg.store_path),
                "HFLAMBDA_REGISTRY": str(cfg.registry.resolve()),
                "HFLAMBDA_PROFILE": os.environ.get("HFLAMBDA_PROFILE", "local"),
                "HFLAMBDA_VECTOR_URI": str(cfg.vectors_path),
                **self._vector_env(),
                "HFLAMBDA_INDEX_QUEUE_URL": queue_url,
                "HFLAMBDA_DLQ_URL": dlq_url,
                "HFLAMBDA_AUTH_ISSUER": self.issuer.issuer,
                "HFLAMBDA_AUTH_AUDIENCE": self.issuer.audience or "",
                "POWERTOOLS_SERVICE_NAME": "hflambda-dev",
                "POWERTOOLS_METRICS_NAMESPACE": "hflambda",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "PYTHONPATH": os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")]).rstrip(
                    os.pathsep
                ),
            }
        )
        # a real issuer (e.g. Clerk) configured by the user wins over the dev issuer
        for name in (
            "HFLAMBDA_AUTH_ISSUER",
            "HFLAMBDA_AUTH_AUDIENCE",
            "HFLAMBDA_AUTH_JWKS_URL",
            "HFLAMBDA_AUTH_AUTHORIZED_PARTIES",
        ):
            if os.environ.get(name):
                env[name] = os.environ[name]
        return env

    def warm(self) -> dict[str, Any]:
        """Run warmup as a child process (the only one importing torch); returns per-model status."""
        self.say(f"warming {self.config.registry} into {self.config.store_path} ...")
        out = subprocess.run(
            [sys.executable, "-m", "hflambda.cli", "warmup", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        try:
            result = json.loads(out.stdout)
        except ValueError:
            self.say(f"warmup failed to run:\n{out.stderr[-2000:]}")
            return {}
        return {
            m["alias"]: {"status": m["status"], "revision": m.get("live_revision"), "reason": m.get("reason")}
            for m in result["models"]
        }

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the API answers /health (raises if it never does)."""
        url = f"http://{self.config.host}:{self.config.port}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            api = self.children["api"]
            if not api.alive():
                raise RuntimeError(
                    f"the predict API exited during start-up; see {api.log}:\n{api.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the predict API did not answer {url} within {timeout:.0f} s")


def install_signal_handlers(stack: DevStack) -> None:
    """Ctrl-C / SIGTERM stop the whole tree."""

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)

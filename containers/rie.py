"""Run a function image as Lambda runs it, under the real Lambda Runtime Interface Emulator.

The RIE is the binary AWS ships for this (``aws-lambda-rie``); the ``aws-sam-cli`` wheel on
PyPI carries it (``samcli/local/rapid/aws-lambda-rie-<arch>``), so :func:`rie_binary` takes it
from there (``pip download aws-sam-cli==<pin> --no-deps`` into ``build/rie/``; SAM CLI is never
installed). Like ``sam local``, the binary is bind-mounted into the container as the
entrypoint, and it starts the image's own ENTRYPOINT with the handler as its command, exactly
what Lambda starts.

:func:`run_function` is a context manager::

    with run_function("hflambda/predict:dev", memory_mb=3008, user="1001:1001",
                      mounts=[Mount(store, "/mnt/models")], env={...}) as fn:
        result = fn.invoke(event)          # POST /2015-03-31/functions/function/invocations
        result.status, result.payload, result.function_error
        fn.init_duration_ms()              # from the RIE's REPORT line
        fn.logs(), fn.diff()

Lambda's constraints by default: read-only root, ``/tmp`` a tmpfs of the function's ephemeral
size, ``--memory`` (no swap) at the function's memory setting, a non-root ``uid:gid``, mounts
read-only unless asked. Network ``host`` (the container shares the host's loopback, where
tests run moto on 127.0.0.1; the RIE's two ports are picked free on 127.0.0.1, so many
containers run side by side) or ``none`` (no network at all; invocations then go through
``docker exec`` inside the container's own loopback).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from containers.engine import Engine, require_engine

ROOT = Path(__file__).resolve().parent.parent
RIE_DIR = ROOT / "build" / "rie"
SAM_CLI = "aws-sam-cli==1.170.0"
RIE_IN_CONTAINER = "/var/rapid/aws-lambda-rie"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
REGION = "us-east-1"
_REPORT = re.compile(r"REPORT RequestId: (?P<id>\S+)(?P<rest>.*)")
_INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([\d.]+)\)")
_INVOKE_DONE = re.compile(r"INVOKE RTDONE\(status: (\w+), produced bytes: \d+, duration: ([\d.]+)ms\)")
_FIELD = re.compile(r"(Init Duration|Duration|Billed Duration|Memory Size|Max Memory Used): ([\d.]+)")


def rie_binary(arch: str = "x86_64") -> Path:
    """The RIE for ``arch`` (x86_64 or arm64), extracted from the aws-sam-cli wheel once."""
    arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(arch, arch)
    target = RIE_DIR / f"aws-lambda-rie-{arch}"
    if target.exists():
        return target
    download = RIE_DIR / "wheel"
    wheels = sorted(download.glob("aws_sam_cli-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        cmd += ["-d", str(download), SAM_CLI]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip download {SAM_CLI} failed: {done.stderr[-2000:]}")
        wheels = sorted(download.glob("aws_sam_cli-*.whl"))
    member = f"samcli/local/rapid/aws-lambda-rie-{arch}"
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(member) as src:
        partial = target.with_suffix(".part")
        with partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Mount:
    """A bind mount: host ``source`` at ``target`` in the container (read-only by default)."""

    source: Path | str
    target: str
    read_only: bool = True

    def arg(self) -> str:
        spec = f"type=bind,source={Path(self.source).resolve()},target={self.target}"
        return spec + (",readonly" if self.read_only else "")


@dataclass(frozen=True)
class Invocation:
    """What the invoke endpoint answered, as Lambda's Invoke API would."""

    status: int
    payload: Any  # the parsed JSON response (or the raw text if it is not JSON)
    function_error: str | None  # X-Amz-Function-Error ("Unhandled") when the function failed
    seconds: float
    raw: str = ""

    @property
    def error_type(self) -> str | None:
        """``errorType`` of a failed invocation (e.g. Runtime.ImportModuleError)."""
        if isinstance(self.payload, dict):
            value = self.payload.get("errorType")
            return str(value) if value is not None else None
        return None


@dataclass(frozen=True)
class Report:
    """One RIE ``REPORT`` line."""

    request_id: str
    duration_ms: float | None
    init_duration_ms: float | None
    max_memory_mb: float | None


@dataclass
class LambdaContainer:
    """A running function container (see :func:`run_function`)."""

    engine: Engine
    name: str
    image: str
    port: int
    network: str
    timeout_s: int
    mount_targets: tuple[str, ...] = ()
    started_at: float = field(default_factory=time.perf_counter)

    def invoke(self, event: Any, *, timeout: float | None = None) -> Invocation:
        """One synchronous invocation with ``event`` (any JSON value) as the payload."""
        body = json.dumps(event).encode()
        limit = timeout if timeout is not None else self.timeout_s + 30
        started = time.perf_counter()
        if self.network == "none":
            status, headers, text = self._invoke_inside(body, limit)
        else:
            status, headers, text = self._invoke_http(body, limit)
        seconds = time.perf_counter() - started
        try:
            payload: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = text
        error = headers.get("x-amz-function-error")
        if error is None and isinstance(payload, dict) and set(payload) >= {"errorType", "errorMessage"}:
            # The RIE answers an init or runtime failure with the error document but does not
            # always set Lambda's header; the Invoke API marks such a response "Unhandled".
            error = "Unhandled"
        return Invocation(status=status, payload=payload, function_error=error, seconds=seconds, raw=text)

    def _invoke_http(self, body: bytes, limit: float) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{INVOKE_PATH}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=limit) as response:
                text = response.read().decode("utf-8", "replace")
                return response.status, {k.lower(): v for k, v in response.headers.items()}, text
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            return error.code, {k.lower(): v for k, v in error.headers.items()}, text

    def _invoke_inside(self, body: bytes, limit: float) -> tuple[int, dict[str, str], str]:
        """POST from inside the container (``--network none`` leaves only its loopback)."""
        script = (
            "import json,sys,urllib.request as u,urllib.error as e\n"
            f"r=u.Request('http://127.0.0.1:{self.port}{INVOKE_PATH}',data=sys.stdin.buffer.read(),method='POST')\n"
            "try:\n x=u.urlopen(r,timeout=%r)\n" % limit + "except e.HTTPError as h:\n x=h\n"
            "print(json.dumps({'status':x.status if hasattr(x,'status') else x.code,"
            "'headers':{k.lower():v for k,v in x.headers.items()},'body':x.read().decode('utf-8','replace')}))\n"
        )
        done = subprocess.run(
            self.engine.command("exec", "-i", self.name, "python3.11", "-I", "-c", script),
            input=body,
            env=self.engine.env,
            capture_output=True,
            timeout=limit + 30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"invoke inside {self.name} failed: {done.stderr.decode()[-2000:]}")
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return int(answer["status"]), dict(answer["headers"]), str(answer["body"])

    def logs(self) -> str:
        done = self.engine.docker("logs", self.name, check=False)
        return (done.stdout or "") + (done.stderr or "")

    def reports(self) -> list[Report]:
        out = []
        for match in _REPORT.finditer(self.logs()):
            fields = dict(_FIELD.findall(match.group("rest")))
            out.append(
                Report(
                    request_id=match.group("id"),
                    duration_ms=float(fields["Duration"]) if "Duration" in fields else None,
                    init_duration_ms=float(fields["Init Duration"]) if "Init Duration" in fields else None,
                    max_memory_mb=float(fields["Max Memory Used"]) if "Max Memory Used" in fields else None,
                )
            )
        return out

    def init_duration_ms(self) -> float | None:
        """The init phase's duration as the RIE reports it (``INIT REPORT(durationMs: ...)``).

        Runtime start to its first ``/next`` (or its init error): the RIE starts the runtime
        on the first invocation, so this is known after it. (The RIE's REPORT line also has an
        "Init Duration", but it counts that init inside "Duration" and reports ~0 ms there.)
        """
        match = _INIT_REPORT.search(self.logs())
        return float(match.group(1)) if match else None

    def invoke_durations_ms(self) -> list[float]:
        """The invoke phase of each invocation so far, as the RIE reports it (init excluded)."""
        return [float(m.group(2)) for m in _INVOKE_DONE.finditer(self.logs())]

    def diff(self) -> list[str]:
        """``docker diff`` minus mount points: every path written in the container's own layer.

        Entries are docker's ``A /path`` / ``C /path`` / ``D /path``. The directories Docker
        creates for bind mounts (the RIE, the caller's mounts) and their parents are left out.
        """
        lines = self.engine.docker("diff", self.name).stdout.splitlines()
        skip = {RIE_IN_CONTAINER, *self.mount_targets}
        parents = {str(p) for target in skip for p in Path(target).parents}
        return [
            ln
            for ln in lines
            if ln[2:] not in skip
            and not (ln.startswith("C ") and ln[2:] in parents)
            and not (ln.startswith("A ") and any(t.startswith(ln[2:] + "/") for t in skip))
        ]

    def running_or_exists(self) -> bool:
        return self.engine.docker("container", "inspect", self.name, check=False).returncode == 0

    def running(self) -> bool:
        done = self.engine.docker("container", "inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return done.returncode == 0 and done.stdout.strip() == "true"

    def stop(self) -> None:
        self.engine.docker("rm", "-f", self.name, check=False)


def _wait_listening(container: LambdaContainer, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if container.network == "host":
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", container.port), 0.5):
                return
        elif container.running():
            probe = container.engine.docker(
                "exec", container.name, "python3.11", "-I", "-c",
                f"import socket; socket.create_connection(('127.0.0.1', {container.port}), 1)",
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
        if not container.running():
            raise RuntimeError(
                f"{container.name} exited before the RIE listened:\n{container.logs()[-3000:]}"
            )
        time.sleep(0.1)
    raise RuntimeError(f"the RIE in {container.name} did not listen within {deadline_s:.0f} s")


def lambda_env(function_name: str, *, memory_mb: int, timeout_s: int) -> dict[str, str]:
    """The variables Lambda itself sets in every function's environment."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "rie",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_Image",
    }


@contextlib.contextmanager
def run_function(
    image: str,
    *,
    memory_mb: int,
    timeout_s: int = 60,
    handler: str | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = "1001:1001",
    mounts: Sequence[Mount] = (),
    network: Literal["host", "none"] = "host",
    read_only: bool = True,
    tmp_mb: int = 512,
    function_name: str | None = None,
    engine: Engine | None = None,
    arch: str = "x86_64",
    start_timeout_s: float = 30.0,
    cpus: float | None = None,
    cpuset: str | None = None,
) -> Iterator[LambdaContainer]:
    """Start ``image`` under the RIE with Lambda's constraints; remove the container on exit.

    ``handler`` overrides the image's command (Lambda's ImageConfig.Command, which CDK sets);
    ``env`` is the function's environment (the RIE adds nothing, Lambda's own variables come
    from :func:`lambda_env`). The container is not started with ``--rm``: logs and ``docker
    diff`` stay readable until the context exits. ``cpus`` (docker ``--cpus``, a CFS quota)
    and ``cpuset`` (``--cpuset-cpus``, the affinity mask) limit the CPUs the function gets.
    """
    engine = engine or require_engine()
    rie = rie_binary(arch)
    config: dict[str, Any] = dict(engine.image_inspect(image).get("Config") or {})
    entrypoint = list(config.get("Entrypoint") or [])
    command = [handler] if handler else list(config.get("Cmd") or [])
    name = f"hflambda-rie-{image.split('/')[-1].split(':')[0]}-{secrets.token_hex(4)}"
    function_name = function_name or f"hflambda-{image.split('/')[-1].split(':')[0]}"
    port = free_port() if network == "host" else 8080
    api_port = free_port() if network == "host" else 9001
    variables = {**lambda_env(function_name, memory_mb=memory_mb, timeout_s=timeout_s), **(env or {})}
    args = ["run", "-d", "--name", name, "--network", network, "--init=false"]
    args += ["--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m"]
    args += ["--tmpfs", f"/tmp:rw,exec,size={tmp_mb}m,mode=1777"]
    if read_only:
        args.append("--read-only")
    if cpus is not None:
        args += ["--cpus", str(cpus)]
    if cpuset is not None:
        args += ["--cpuset-cpus", cpuset]
    if user:
        args += ["--user", user]
    args += ["--mount", Mount(rie, RIE_IN_CONTAINER).arg()]
    for mount in mounts:
        args += ["--mount", mount.arg()]
    for key, value in variables.items():
        args += ["--env", f"{key}={value}"]
    args += ["--entrypoint", RIE_IN_CONTAINER, image]
    args += [
        "--log-level", "info",
        "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
        "--runtime-api-address", f"127.0.0.1:{api_port}",
    ]  # fmt: skip
    args += entrypoint + command
    engine.docker(*args)
    container = LambdaContainer(
        engine, name, image, port, network, timeout_s, mount_targets=tuple(m.target for m in mounts)
    )
    try:
        _wait_listening(container, start_timeout_s)
        yield container
    finally:
        container.stop()

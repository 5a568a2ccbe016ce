"""One execution environment of a template function: its image in a container, under the real
Lambda Runtime Interface Emulator, with the function's constraints.

``docker run`` (the engine from ``containers.engine``) with:

- the image the template's asset builds (``hflambda/<fn>:dev``, ``containers.images``), the
  emulator (from the ``aws-sam-cli`` wheel, extracted under ``build/rie/``) bind-mounted
  read-only as the entrypoint, running the image's runtime interface client with the
  template's ``ImageConfig.Command``;
- ``--read-only`` root, ``/tmp`` a tmpfs of the function's ``EphemeralStorage``, memory (and
  swap) limited to ``MemorySize``, the access point's POSIX user, the store bind-mounted at
  ``LocalMountPath`` (read-only unless the role may ``ClientWrite``);
- ``--network host`` with the emulator and its Runtime API on free loopback ports (moto, the
  Hub stand-in and the issuer are on 127.0.0.1); the environment is the function's, complete.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rehearsal.functions import Invocation
from rehearsal.rieclient import post_invoke
from rehearsal.template import FunctionSpec

__all__ = ["ContainerInstance", "rie_binary", "start_container"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("python3.11", "-m", "awslambdaric")  # the image's runtime interface client


def rie_binary(architecture: str = "x86_64") -> Path:
    """The emulator binary for ``architecture`` (``make images`` extracts it from the aws-sam-cli wheel)."""
    name = "aws-lambda-rie-arm64" if architecture == "arm64" else "aws-lambda-rie-x86_64"
    path = REPO_ROOT / "build" / "rie" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: `make images` extracts the emulator from the aws-sam-cli wheel")
    return path


def ensure_asset_images(assets: dict[str, dict[str, Any]], *, say: Any = print) -> dict[str, str]:
    """Each function's image as its asset describes it (Dockerfile, build arguments, platform,
    network mode): function -> image tag.

    An asset with ``containers.images``' own arguments is that image (``hflambda/<fn>:dev``,
    built through the layer cache); another registry or setting builds
    ``hflambda/<fn>:rehearsal-<asset hash>`` from the same Dockerfile with the asset's arguments.
    """
    from containers import images, wheelhouse
    from containers.base import ensure_base
    from containers.engine import ensure_engine
    from rehearsal.template import asset_function

    tags: dict[str, str] = {}
    engine = None
    for digest, asset in sorted(assets.items()):
        function = asset_function(asset)
        if function is None:
            continue
        source = asset["source"]
        arguments = {str(k): str(v) for k, v in (source.get("dockerBuildArgs") or {}).items()}
        if arguments == images.build_args(function) and source.get("dockerFile") == images.DOCKERFILE:
            images.ensure_images([function])
            tags[function] = images.tag(function)
            continue
        if engine is None:
            engine = ensure_engine()
            ensure_base(engine)
        wheelhouse.fill(arguments.get("REQUIREMENTS", images.REQUIREMENTS[function]))
        tag = f"hflambda/{function}:rehearsal-{digest[:12]}"
        argv = ["build", "-f", str(source["dockerFile"]), "-t", tag, "--platform", str(source.get("platform", "linux/amd64"))]
        if source.get("networkMode"):
            argv += ["--network", str(source["networkMode"])]
        for key, value in arguments.items():
            argv += ["--build-arg", f"{key}={value}"]
        say(f"building {tag} from {source['dockerFile']} with {arguments}")
        engine.docker(*argv, "--quiet", str(REPO_ROOT), timeout=3600)
        tags[function] = tag
    return tags


@dataclass
class ContainerInstance:
    spec: FunctionSpec
    env: dict[str, str]
    store_root: Path
    log: Path
    number: int
    image: str
    engine: Any = None
    name: str = ""
    url: str = ""
    memory_mb: int = 0
    _logger: subprocess.Popen[bytes] | None = None
    _env_file: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, wait: float = 120.0) -> ContainerInstance:
        from containers.engine import ensure_engine
        from hflambda.devstack import free_port

        self.engine = self.engine or ensure_engine()
        port, api_port = free_port(), free_port()
        self.name = f"hflambda-rehearsal-{self.spec.function}-{self.number}-{uuid.uuid4().hex[:6]}"
        self.memory_mb = self.spec.memory_mb
        fd, env_path = tempfile.mkstemp(prefix="rehearsal-env-", suffix=".list")
        with open(fd, "w") as env_file:
            for key, value in self.env.items():
                if "\n" in value:
                    raise ValueError(f"{self.spec.name}: environment variable {key} holds a newline")
                env_file.write(f"{key}={value}\n")
        self._env_file = Path(env_path)
        rie = rie_binary(self.spec.architecture)
        argv = [
            "run", "--detach", "--name", self.name,
            "--network", "host",
            "--read-only",
            "--tmpfs", f"/tmp:rw,exec,size={self.spec.ephemeral_mb}m,mode=1777",
            "--memory", f"{self.spec.memory_mb}m", "--memory-swap", f"{self.spec.memory_mb}m",
            "--env-file", str(self._env_file),
            "--volume", f"{rie}:/usr/local/bin/aws-lambda-rie:ro",
            "--entrypoint", "/usr/local/bin/aws-lambda-rie",
        ]  # fmt: skip
        users = {(m.uid, m.gid) for m in self.spec.mounts}
        if len(users) > 1:
            raise ValueError(f"{self.spec.name}: access points with different POSIX users {sorted(users)}")
        uid, gid = users.pop() if users else (993, 990)  # Lambda's sandbox user when no access point sets one
        argv += ["--user", f"{uid}:{gid}"]
        for mount in self.spec.mounts:
            host = self.store_root / mount.root_path.strip("/")
            host.mkdir(parents=True, exist_ok=True)
            argv += ["--volume", f"{host}:{mount.local_mount_path}:{'ro' if mount.read_only else 'rw'}"]
        argv += [
            self.image,
            "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
            "--runtime-api-address", f"127.0.0.1:{api_port}",
            *RUNTIME, *(self.spec.command or ()),
        ]  # fmt: skip
        self.engine.docker(*argv)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        self._logger = subprocess.Popen(
            self.engine.command("logs", "--follow", self.name), env=self.engine.env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url + "/", timeout=1)
                return self
            state = self.engine.docker("inspect", "--format", "{{.State.Status}}", self.name, check=False).stdout.strip()
            if state not in ("running", "created"):
                raise RuntimeError(f"{self.spec.name}: container {state or 'gone'}; see {self.log}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.spec.name}: the emulator did not listen within {wait:.0f} s; see {self.log}")

    def invoke(self, event: dict[str, Any], *, timeout: float) -> Invocation:
        return post_invoke(self.url, event, timeout=timeout)

    def inspect(self) -> dict[str, Any]:
        """The container as the engine runs it (``docker inspect``)."""
        import json

        document: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", self.name).stdout)
        return document[0]

    def close(self) -> None:
        with self._lock:
            if self.engine is not None and self.name:
                self.engine.docker("rm", "--force", self.name, check=False)
                self.name = ""
            if self._logger is not None:
                with contextlib.suppress(Exception):
                    self._logger.terminate()
                    self._logger.wait(5)
                self._logger = None
            if self._env_file is not None:
                self._env_file.unlink(missing_ok=True)
                self._env_file = None


def start_container(
    spec: FunctionSpec, env: dict[str, str], *, image: str, store_root: Path, log: Path, number: int
) -> ContainerInstance:
    """Start one environment of ``spec`` from ``image`` and wait until its emulator listens."""
    return ContainerInstance(spec, env, store_root, log, number, image).start()

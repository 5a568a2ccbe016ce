"""One execution environment of a template function: its image in a container, under the real
Lambda Runtime Interface Emulator, with the function's constraints.

``containers.rie.run_function`` (the images tier's runner) with what the template says: the
image its asset builds (:func:`ensure_asset_images`), ``ImageConfig.Command`` as the handler,
``MemorySize`` as the memory (and swap) limit, ``Timeout``, ``EphemeralStorage`` as the
``/tmp`` tmpfs, a read-only root, the access point's POSIX user, the store bind-mounted at
``LocalMountPath`` (read-only unless the role may ``ClientWrite``), ``--network host`` (moto,
the Hub stand-in and the issuer are on 127.0.0.1), and the function's complete environment.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rehearsal.functions import Invocation, classify_payload
from rehearsal.template import FunctionSpec

__all__ = ["ContainerInstance", "ensure_asset_images", "start_container"]

REPO_ROOT = Path(__file__).resolve().parent.parent


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
        argv = [
            "build",
            "-f",
            str(source["dockerFile"]),
            "-t",
            tag,
            "--platform",
            str(source.get("platform", "linux/amd64")),
        ]
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
    """One running environment: ``containers.rie.run_function`` held open until ``close()``."""

    spec: FunctionSpec
    env: dict[str, str]
    store_root: Path
    log: Path
    number: int
    image: str
    container: Any = None
    memory_mb: int = 0
    _stack: contextlib.ExitStack | None = None
    _logger: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, wait: float = 120.0) -> ContainerInstance:
        from containers.rie import Mount, run_function

        users = {(m.uid, m.gid) for m in self.spec.mounts}
        if len(users) > 1:
            raise ValueError(f"{self.spec.name}: access points with different POSIX users {sorted(users)}")
        uid, gid = users.pop() if users else (993, 990)  # Lambda's sandbox user when no access point sets one
        mounts = []
        for mount in self.spec.mounts:
            host = self.store_root / mount.root_path.strip("/")
            host.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(str(host), mount.local_mount_path, read_only=mount.read_only))
        stack = contextlib.ExitStack()
        self.container = stack.enter_context(
            run_function(
                self.image,
                memory_mb=self.spec.memory_mb,
                timeout_s=self.spec.timeout_s,
                handler=self.spec.command[0] if self.spec.command else None,
                env=self.env,
                user=f"{uid}:{gid}",
                mounts=tuple(mounts),
                network="host",
                read_only=True,
                tmp_mb=self.spec.ephemeral_mb,
                function_name=self.spec.name,
                arch=self.spec.architecture,
                start_timeout_s=wait,
            )
        )
        self._stack = stack
        self.memory_mb = self.spec.memory_mb
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        engine = self.container.engine
        self._logger = subprocess.Popen(
            engine.command("logs", "--follow", self.container.name),
            env=engine.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        return self

    def invoke(self, event: dict[str, Any], *, timeout: float) -> Invocation:
        answer = self.container.invoke(event, timeout=timeout)
        payload = answer.raw.encode()
        error = answer.function_error or classify_payload(payload)
        if answer.status >= 500 and error is None:
            error = "Unhandled"
        return Invocation(payload=payload, function_error=error, duration_s=answer.seconds)

    def inspect(self) -> dict[str, Any]:
        """The container as the engine runs it (``docker inspect``)."""
        import json

        document: list[dict[str, Any]] = json.loads(
            self.container.engine.docker("inspect", self.container.name).stdout
        )
        return document[0]

    def close(self) -> None:
        with self._lock:
            if self._stack is not None:
                with contextlib.suppress(Exception):
                    self._stack.close()
                self._stack = None
            if self._logger is not None:
                with contextlib.suppress(Exception):
                    self._logger.terminate()
                    self._logger.wait(5)
                self._logger = None


def start_container(
    spec: FunctionSpec, env: dict[str, str], *, image: str, store_root: Path, log: Path, number: int
) -> ContainerInstance:
    """Start one environment of ``spec`` from ``image`` and wait until its emulator listens."""
    return ContainerInstance(spec, env, store_root, log, number, image).start()

"""A Docker engine to build and run the function images: the one already running, or ours.

``ensure_engine()`` returns an :class:`Engine` (the docker client to call and the environment
to call it with). In order it

1. uses ``$DOCKER_HOST`` if set and answering (a user's own engine);
2. uses this project's engine if it already runs (socket ``/run/hflambda-docker.sock``);
3. uses the system engine (``/var/run/docker.sock``) if it answers;
4. otherwise, as root only, installs Debian's ``docker.io`` (apt) when ``dockerd`` is missing
   and starts ``dockerd`` with its own data root *outside the clone*
   (``/var/lib/hflambda-docker``: built layers survive a fresh clone, so CI reuses them), its
   own exec root, socket and pidfile, no iptables, no bridge (containers get ``--network
   host`` or ``none``), overlay2.

When none of that works it raises :class:`EngineUnavailable` with one line saying why.
``python -m containers.engine`` is the command-line form (``make`` targets call it): it
prints that one line and exits 2, except on CI (``CI`` set), where a missing engine is
simply a failure (exit 1).

The client is Debian's ``/usr/bin/docker`` when present (a newer client earlier on PATH may
lack the classic BuildKit path: there is no buildx plugin here), with ``DOCKER_BUILDKIT=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_ROOT = Path(os.environ.get("HFLAMBDA_DOCKER_ROOT", "/var/lib/hflambda-docker"))
EXEC_ROOT = Path("/run/hflambda-docker")
SOCKET = Path("/run/hflambda-docker.sock")
PIDFILE = Path("/run/hflambda-docker.pid")
LOGFILE = DATA_ROOT.parent / "hflambda-docker.log"
SYSTEM_SOCKET = Path("/var/run/docker.sock")
APT_PACKAGES = ("docker.io", "containerd", "runc", "debootstrap")
DEBIAN_CLIENT = Path("/usr/bin/docker")
START_TIMEOUT_S = 60.0


class EngineUnavailable(RuntimeError):
    """No Docker engine can be used or started here; ``str()`` is the one line to print."""


@dataclass(frozen=True)
class Engine:
    """How to talk to the engine: ``engine.docker("ps")`` or ``[engine.client, ...]`` + ``engine.env``."""

    client: str
    host: str  # DOCKER_HOST value, e.g. unix:///run/hflambda-docker.sock
    started_here: bool = False
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return [self.client, *args]

    def docker(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker <args>``; on failure raise with the command's stderr."""
        done = subprocess.run(
            self.command(*args),
            env=self.env,
            capture_output=capture,
            text=input is None,
            input=input,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            err = done.stderr if isinstance(done.stderr, str) else (done.stderr or b"").decode()
            raise RuntimeError(f"docker {' '.join(args[:3])} failed ({done.returncode}): {err[-2000:]}")
        return done  # type: ignore[return-value]

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def image_inspect(self, ref: str) -> dict[str, Any]:
        out = self.docker("image", "inspect", ref).stdout
        data: list[dict[str, Any]] = json.loads(out)
        return data[0]


def client_path() -> str:
    """Debian's docker client if installed (BuildKit via DOCKER_BUILDKIT=1), else PATH's."""
    if DEBIAN_CLIENT.exists():
        return str(DEBIAN_CLIENT)
    found = shutil.which("docker")
    if found is None:
        raise EngineUnavailable("no docker client (install Docker, or run as root so it can be installed)")
    return found


def _env(host: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host, DOCKER_BUILDKIT="1")
    return env


def _answers(client: str, host: str, timeout: float = 10.0) -> bool:
    try:
        done = subprocess.run(
            [client, "version", "--format", "{{.Server.Version}}"],
            env=_env(host),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def _install_packages(missing: Sequence[str]) -> None:
    if shutil.which("apt-get") is None:
        raise EngineUnavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    print(f"engine: installing {' '.join(missing)} with apt-get ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise EngineUnavailable(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}")


def ensure_tools() -> None:
    """Install docker.io, containerd, runc and debootstrap with apt if any is missing (root only)."""
    wanted = {
        "dockerd": "docker.io",
        "containerd": "containerd",
        "runc": "runc",
        "debootstrap": "debootstrap",
    }
    missing = [
        pkg
        for tool, pkg in wanted.items()
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        if os.geteuid() != 0:
            raise EngineUnavailable(f"{', '.join(missing)} not installed and not root to install them")
        _install_packages(missing)


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_dockerd() -> None:
    """Start our own dockerd (root only) and wait until it answers."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    EXEC_ROOT.mkdir(parents=True, exist_ok=True)
    if _pid_alive(PIDFILE) is None:
        PIDFILE.unlink(missing_ok=True)
        SOCKET.unlink(missing_ok=True)
    cmd = [
        dockerd,
        f"--data-root={DATA_ROOT}",
        f"--exec-root={EXEC_ROOT}",
        f"--host=unix://{SOCKET}",
        f"--pidfile={PIDFILE}",
        "--storage-driver=overlay2",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--log-level=warn",
    ]
    log = LOGFILE.open("ab")
    # Its own session: the daemon outlives the make target that started it (CI reuses it).
    subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    client = client_path()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _answers(client, f"unix://{SOCKET}", timeout=5):
            return
        time.sleep(0.5)
    tail = LOGFILE.read_text(errors="replace").strip().splitlines()[-3:] if LOGFILE.exists() else []
    raise EngineUnavailable(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s: {' | '.join(tail)}")


def ensure_engine(*, start: bool = True) -> Engine:
    """Return an engine that answers, starting ours if needed (see the module docstring)."""
    own = f"unix://{SOCKET}"
    user_host = os.environ.get("DOCKER_HOST")
    candidates = [h for h in (user_host, own, f"unix://{SYSTEM_SOCKET}") if h]
    try:
        client = client_path()
    except EngineUnavailable:
        client = ""
    if client:
        for host in candidates:
            if _answers(client, host):
                return Engine(client=client, host=host, env=_env(host))
    if not start:
        raise EngineUnavailable("no Docker engine answers (DOCKER_HOST, our socket or /var/run/docker.sock)")
    if os.geteuid() != 0:
        raise EngineUnavailable(
            "no Docker engine answers and this is not root, so none can be started "
            "(start Docker, or set DOCKER_HOST)"
        )
    ensure_tools()
    start_dockerd()
    client = client_path()
    return Engine(client=client, host=own, started_here=True, env=_env(own))


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def require_engine() -> Engine:
    """For command-line entry points: an engine, or one clear line and a non-zero exit."""
    try:
        return ensure_engine()
    except EngineUnavailable as error:
        if on_ci():
            print(f"FAIL: no Docker engine on CI: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"Docker engine unavailable: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def stop_own_engine() -> bool:
    """Stop the dockerd this module started (by its pidfile). True if one was running."""
    pid = _pid_alive(PIDFILE)
    if pid is None:
        return False
    os.kill(pid, 15)
    for _ in range(100):
        if _pid_alive(PIDFILE) is None:
            return True
        time.sleep(0.2)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["stop"]:
        print("stopped" if stop_own_engine() else "not running")
        return 0
    engine = require_engine()
    version = engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    print(f"engine: docker {version} at {engine.host} (client {engine.client})")
    if args == ["env"]:
        print(f"export DOCKER_HOST={engine.host} DOCKER_BUILDKIT=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())

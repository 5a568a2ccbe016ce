"""The base image every function image starts from, and how to get it without a registry.

The Dockerfile says ``FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm``: the
Docker official image (Debian 12 "bookworm" slim + CPython 3.11), served from Amazon ECR
Public so a user's ``cdk deploy`` pulls it without Docker Hub's anonymous rate limit.

No container registry is reachable on the CI machines, so ``ensure_base`` makes an image
under that same name from Debian's archive: ``debootstrap --variant=minbase bookworm`` with
Debian's ``python3.11`` (and ``ca-certificates``: Debian's public CA bundle, nothing of this
machine's), ``python3.11``/``python3`` linked into ``/usr/local/bin`` where the official image
keeps its interpreter, apt lists and docs removed, imported with the official image's
``PATH``, ``LANG`` and ``CMD``. Same distribution, glibc 2.36 and Python minor as the public
image; the interpreter build differs (Debian's 3.11.2 here, python.org's latest 3.11.x
there), so the Dockerfile relies only on what both have: ``python3.11`` on ``PATH``, no
pip (it runs pip from the wheelhouse's wheel), manylinux wheels for glibc <= 2.36.

An image already present under the name is reused (a user's pulled one, or ours from an
earlier run: the engine's data root outlives the clone). ``python -m containers.base``
builds it if missing; ``--rebuild`` replaces ours.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from containers.engine import Engine, ensure_tools, require_engine

BASE_IMAGE = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3.11", "ca-certificates")
LABEL = "org.hflambda.base=debootstrap-bookworm"  # marks our build (a pulled image has none)
WORK_ROOT = Path("/var/tmp")  # the rootfs is ~150 MB; not in the clone

SLIM = r"""
set -e
ln -sf /usr/bin/python3.11 /usr/local/bin/python3.11
ln -sf /usr/bin/python3.11 /usr/local/bin/python3
ln -sf /usr/bin/python3.11 /usr/local/bin/python
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
       /usr/share/doc/* /usr/share/man/* /usr/share/info/* /var/log/*.log /var/log/apt/*
"""


def is_ours(engine: Engine) -> bool:
    labels = (engine.image_inspect(BASE_IMAGE).get("Config") or {}).get("Labels") or {}
    return labels.get("org.hflambda.base") is not None


def build_base(engine: Engine) -> float:
    """debootstrap a bookworm rootfs with Debian's python3.11 and import it as BASE_IMAGE."""
    ensure_tools()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hflambda-base-", dir=WORK_ROOT) as tmp:
        root = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            MIRROR,
        ]
        print(f"base: {' '.join(cmd)} ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {(done.stdout + done.stderr)[-2000:]}")
        done = subprocess.run(["chroot", str(root), "/bin/sh", "-c", SLIM], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"slimming the rootfs failed: {done.stderr[-2000:]}")
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
        )
        imported = subprocess.run(
            engine.command(
                "import",
                "--change",
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                f"LABEL {LABEL}",
                "--change",
                'CMD ["python3"]',
                "--platform",
                "linux/amd64",
                "-",
                BASE_IMAGE,
            ),
            stdin=tar.stdout,
            env=engine.env,
            capture_output=True,
            text=True,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr[-2000:]}")
        shutil.rmtree(root, ignore_errors=True)
    return time.perf_counter() - started


def ensure_base(engine: Engine, *, rebuild: bool = False) -> str:
    """BASE_IMAGE present in the engine (reused if there); returns its name."""
    if engine.image_exists(BASE_IMAGE) and not (rebuild and is_ours(engine)):
        return BASE_IMAGE
    seconds = build_base(engine)
    print(f"base: built {BASE_IMAGE} from Debian {SUITE} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return BASE_IMAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (or reuse) the base image.")
    parser.add_argument("--rebuild", action="store_true", help="rebuild our debootstrap base")
    args = parser.parse_args(argv)
    engine = require_engine()
    print(ensure_base(engine, rebuild=args.rebuild))
    return 0


if __name__ == "__main__":
    sys.exit(main())

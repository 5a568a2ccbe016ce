"""The host-side wheelhouse the images install from: ``build/wheelhouse/<arch>/<set>/``.

``make wheelhouse`` (and ``make images``, ``cdk deploy`` through ``make deploy-wheels``)
runs, for each requirement set (``requirements/serve.txt``, ``requirements/warmup.txt``)::

    pip download --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \\
        --platform manylinux_2_17_<arch> ... --platform manylinux_2_36_<arch> \\
        --extra-index-url https://download.pytorch.org/whl/cpu \\
        -d build/wheelhouse/<arch>/<set> -r requirements/<set>.txt pip==<PIP>

with the host's own pip and its configuration: a user's machine fetches from PyPI and, for
torch's ``+cpu`` build, the PyTorch CPU index; the CI machines find the same files in their
configured local indexes and find-links. The image build then copies that folder in and
installs with ``--no-index``, so it needs no network and no CA. The pip wheel itself is in
the folder: the Dockerfile runs pip from it, so the base needs no pip of its own.

Each folder carries a stamp (the requirement file's sha256, the arch and the pip pin);
an unchanged set is not downloaded again, and a stale folder is emptied first, so it holds
exactly the pinned set.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / "build" / "wheelhouse"
SETS = ("serve", "warmup")
PIP = "pip==26.3"  # the installer the Dockerfile runs from the wheelhouse
TORCH_INDEX = os.environ.get("HFLAMBDA_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
GLIBC_MINOR = 36  # Debian 12 bookworm (containers/base.py); requirements/compile.py agrees
ARCHES = {"x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64", "amd64": "x86_64"}


def folder(requirement_set: str, arch: str = "x86_64") -> Path:
    return WHEELHOUSE / ARCHES[arch] / requirement_set


def relative_folder(requirement_set: str, arch: str = "x86_64") -> str:
    """The folder as the Dockerfile's ``WHEELS`` build argument names it (relative to the repo)."""
    return folder(requirement_set, arch).relative_to(ROOT).as_posix()


def _platform_args(arch: str) -> list[str]:
    tags = [f"manylinux2014_{arch}"] + [f"manylinux_2_{m}_{arch}" for m in range(17, GLIBC_MINOR + 1)]
    return [arg for tag in tags for arg in ("--platform", tag)]


def _stamp(requirement_set: str, arch: str) -> str:
    reqs = ROOT / "requirements" / f"{requirement_set}.txt"
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()
    return f"{digest} {arch} {PIP}\n"


def _download(pins: list[str], target: Path, arch: str, *, extra_index: str | None = None) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        *_platform_args(arch),
        "-d",
        str(target),
        *pins,
    ]
    if extra_index:
        cmd += ["--extra-index-url", extra_index]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip download into {target} failed:\n{done.stderr[-3000:]}")


def fill(requirement_set: str, arch: str = "x86_64", *, torch_index: str | None = TORCH_INDEX) -> Path:
    """Download the set's wheels (and pip's) for ``arch`` unless the folder already matches."""
    arch = ARCHES[arch]
    target = folder(requirement_set, arch)
    stamp = target / ".stamp"
    want = _stamp(requirement_set, arch)
    if stamp.exists() and stamp.read_text() == want:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    reqs = ROOT / "requirements" / f"{requirement_set}.txt"
    pins = [ln for ln in reqs.read_text().splitlines() if ln and not ln.startswith("#")]
    # torch's +cpu build is on the PyTorch CPU index only: ask that index for torch alone
    # (asking it for every package costs a round trip each, and minutes where it is unreachable).
    torch = [ln for ln in pins if ln.split("==")[0].lower() == "torch"]
    rest = [ln for ln in pins if ln not in torch] + [PIP]
    started = time.perf_counter()
    print(f"wheelhouse: pip download {requirement_set} ({arch}) ...", file=sys.stderr, flush=True)
    _download(rest, target, arch)
    if torch:
        _download(torch, target, arch, extra_index=torch_index)
    count = len(list(target.glob("*.whl")))
    if count != len(pins) + 1:
        raise RuntimeError(f"{target}: {count} wheels for {len(pins)} pins + pip")
    stamp.write_text(want)
    seconds = time.perf_counter() - started
    print(f"wheelhouse: {count} wheels in {target.relative_to(ROOT)} ({seconds:.0f} s)", file=sys.stderr)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fill build/wheelhouse/ from requirements/*.txt.")
    parser.add_argument("--arch", default="x86_64", choices=sorted(ARCHES))
    parser.add_argument("sets", nargs="*", help=f"any of {', '.join(SETS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.sets) - set(SETS)
    if unknown:
        parser.error(f"unknown set(s) {sorted(unknown)}")
    for requirement_set in args.sets or SETS:
        print(fill(requirement_set, args.arch).relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())

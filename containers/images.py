"""Build the three function images from ``functions/Dockerfile``: ``hflambda/<fn>:dev``.

``ensure_images()`` brings up the engine, the base and the wheelhouse, then builds every
image through Docker's layer cache: with nothing changed a rebuild takes seconds (every step
is a cache hit). The build context is the repo root filtered by the same allow-list CDK's
image asset sends (:func:`cdk.model_function.image_asset_files`) only in spirit: BuildKit
transfers just the paths the Dockerfile's COPY lines name, so the context is the repo root.

``python -m containers.images [predict index warmup]`` is ``make images``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from containers import wheelhouse
from containers.base import BASE_IMAGE, ensure_base
from containers.engine import Engine, require_engine

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "functions/Dockerfile"
# Requirement set each function's image installs (requirements/<set>.txt); CDK imports this.
REQUIREMENTS = {"predict": "serve", "index": "serve", "warmup": "warmup"}
FUNCTIONS = tuple(REQUIREMENTS)
SERVING = ("predict", "index")
BANNED = ("torch", "transformers", "optimum", "huggingface_hub")  # never in a serving image
REGISTRY_FILE = "models.toml"
# Removed from every image by the Dockerfile (paths under layers/hflambda); CDK's asset leaves them out.
DEV_ONLY = ("devstack.py", "poller.py", "s3vectors_fake.py", "cli")


def tag(function: str) -> str:
    return f"hflambda/{function}:dev"


def build_args(function: str, *, arch: str = "x86_64", registry: str = REGISTRY_FILE) -> dict[str, str]:
    """The Dockerfile's build arguments for ``function`` (CDK passes the same)."""
    return {
        "FUNCTION": function,
        "REQUIREMENTS": REQUIREMENTS[function],
        "WHEELS": wheelhouse.relative_folder(REQUIREMENTS[function], arch).rsplit("/", 1)[0],
        "REGISTRY_FILE": registry,
    }


@dataclass(frozen=True)
class Built:
    function: str
    tag: str
    image_id: str
    seconds: float


def build(function: str, engine: Engine | None = None, *, quiet: bool = True) -> Built:
    """Build ``hflambda/<function>:dev`` (linux/amd64) from the repo's Dockerfile."""
    if function not in REQUIREMENTS:
        raise ValueError(f"unknown function {function!r}")
    engine = engine or require_engine()
    wheelhouse.fill(REQUIREMENTS[function])
    # --network none: the build installs from the wheelhouse only, and this proves it.
    args = ["build", "-f", DOCKERFILE, "-t", tag(function), "--platform", "linux/amd64", "--network", "none"]
    for key, value in build_args(function).items():
        args += ["--build-arg", f"{key}={value}"]
    if quiet:
        args.append("--quiet")
    args.append(str(ROOT))
    started = time.perf_counter()
    done = subprocess.run(engine.command(*args), env=engine.env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"docker build of {function} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    image_id = str(engine.image_inspect(tag(function))["Id"])
    return Built(function, tag(function), image_id, seconds)


def ensure_images(
    functions: tuple[str, ...] | list[str] = FUNCTIONS, engine: Engine | None = None
) -> dict[str, Built]:
    """Engine, base and wheelhouse up; every image in ``functions`` built (cache-cheap)."""
    engine = engine or require_engine()
    ensure_base(engine)
    return {fn: build(fn, engine) for fn in functions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the function images (hflambda/<fn>:dev).")
    parser.add_argument("functions", nargs="*", help=f"any of {', '.join(FUNCTIONS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.functions) - set(FUNCTIONS)
    if unknown:
        parser.error(f"unknown function(s) {sorted(unknown)}")
    engine = require_engine()
    started = time.perf_counter()
    ensure_base(engine)
    print(f"base: {BASE_IMAGE}")
    for fn in args.functions or FUNCTIONS:
        built = build(fn, engine)
        size = int(engine.image_inspect(built.tag)["Size"])
        print(f"{built.tag}: {size / 1e6:,.0f} MB, built in {built.seconds:.0f} s ({built.image_id[:19]})")
    print(f"images ready in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the fully pinned image requirement sets from ``pyproject.toml`` extras.

    python requirements/compile.py            # rewrite requirements/{warmup,serve}.txt
    python requirements/compile.py --check    # exit 1 if the committed files are stale

Two sets, both for CPython 3.11 on the images' glibc (Debian 12 bookworm, the base
``python:3.11-slim-bookworm``: 2.36):

- ``warmup.txt``: core + ``[serve]`` + ``[warmup]`` + the Lambda runtime interface client,
  with torch pinned to its CPU-only build (``+cpu``; the Dockerfile adds the PyTorch CPU
  index, this machine has the wheel in its pip find-links).
- ``serve.txt`` (predict and index): core + ``[serve]`` + the runtime interface client,
  resolved *against the warmup pins* so both images run the same onnxruntime, tokenizers
  and numpy. Packages reachable only through the compile side are then cut: ``tokenizers``
  declares ``huggingface_hub`` in its metadata although the serving code never calls the
  Hub, so the serve set leaves it (and whatever only it pulls in) out.

The Dockerfiles therefore install with ``pip install --no-deps -r ...``: the file is the
whole, closed set and pip must not re-add what was cut. Resolution uses ``pip install
--dry-run --report`` (no extra tooling), for ``--platform`` tags, binary wheels only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "requirements"
PROJECT = "hflambda"
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36  # Debian 12 bookworm, the base of python:3.11-slim-bookworm (containers/base.py)
ARCHES = ("x86_64", "aarch64")
# The images start from a plain Python base, so they bring their own Lambda runtime client.
LAMBDA_RUNTIME = ("awslambdaric>=3,<5",)
# Never in the serve set (docs/architecture.md: compile at warmup, serve lean).
SERVE_BANNED = frozenset(
    canonicalize_name(n) for n in ("torch", "transformers", "optimum", "optimum-onnx", "huggingface-hub")
)
# Core dependencies only the CLI imports (the images ship no CLI: containers.images.DEV_ONLY),
# cut from the serve set with whatever only they pull in (click, pygments, markdown-it, ...).
CLI_ONLY = frozenset(canonicalize_name(n) for n in ("typer", "rich"))


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    requires: tuple[str, ...]


def platforms(arch: str) -> list[str]:
    """Every manylinux tag a glibc-2.GLIBC_MINOR system accepts (pip does not expand them)."""
    tags = [f"manylinux2014_{arch}"]
    tags += [f"manylinux_2_{minor}_{arch}" for minor in range(17, GLIBC_MINOR + 1)]
    return [arg for tag in tags for arg in ("--platform", tag)]


def project_requirements(*extras: str) -> list[str]:
    """The requirement strings of the core dependencies plus ``extras``, self-references expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = list(project["dependencies"])
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in optional[extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                out.append(spec)
    return out


def torch_pin(requirements: Iterable[str]) -> str:
    """pyproject pins torch exactly; the image takes that version's CPU-only build."""
    for spec in requirements:
        req = Requirement(spec)
        if canonicalize_name(req.name) == "torch":
            (clause,) = req.specifier
            if clause.operator != "==":
                raise SystemExit(f"torch must be pinned with == in pyproject.toml, got {spec!r}")
            return f"torch=={clause.version.split('+')[0]}+cpu"
    raise SystemExit("no torch requirement in the warmup extra")


def resolve(
    requirements: list[str],
    *,
    arch: str,
    constraints: Path | None = None,
    extra_index: str | None = None,
    no_deps: bool = False,
) -> dict[str, Pin]:
    """Resolve ``requirements`` for the Lambda platform with pip's dry run and return its pins."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        reqs = Path(tmp) / "requirements.in"
        reqs.write_text("\n".join(requirements) + "\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            *platforms(arch),
            "--target",
            str(Path(tmp) / "t"),
            "--report",
            str(report),
            "-r",
            str(reqs),
        ]
        if constraints is not None:
            cmd += ["-c", str(constraints)]
        if extra_index:
            cmd += ["--extra-index-url", extra_index]
        if no_deps:
            cmd.append("--no-deps")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"pip could not resolve the set for {arch} (see above)")
        data = json.loads(report.read_text())
    pins: dict[str, Pin] = {}
    for item in data["install"]:
        meta = item["metadata"]
        name = canonicalize_name(meta["name"])
        pins[name] = Pin(name, meta["version"], tuple(meta.get("requires_dist") or ()))
    return pins


def reachable(
    pins: dict[str, Pin], roots: list[str], *, arch: str, banned: frozenset[str] = frozenset()
) -> set[str]:
    """Names reachable from ``roots`` through the pins' metadata, never walking into ``banned``."""
    env = {k: str(v) for k, v in default_environment().items()}
    env.update(
        sys_platform="linux",
        platform_system="Linux",
        platform_machine=arch,
        python_version=PYTHON_VERSION,
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    env["python_full_version"] = PYTHON_VERSION + ".0"
    wanted: dict[str, set[str]] = {}
    todo = [Requirement(spec) for spec in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in banned or name not in pins:
            continue
        extras = set(req.extras)
        if name in wanted and extras <= wanted[name]:
            continue
        wanted.setdefault(name, set()).update(extras)
        for spec in pins[name].requires:
            dep = Requirement(spec)
            marker_ok = dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in (wanted[name] or {""})
            )
            if marker_ok:
                todo.append(dep)
    return set(wanted)


def render(title: str, pins: dict[str, Pin], keep: set[str], install: str, notes: list[str]) -> str:
    lines = [
        f"# {title}",
        "# Generated by requirements/compile.py from pyproject.toml: do not edit, run",
        "# `make requirements`. CPython 3.11, manylinux (glibc 2.36, Debian 12 bookworm),",
        "# x86_64 and aarch64. The set is closed: install it with",
        f"#   {install}",
        *[f"# {note}" for note in notes],
    ]
    lines += [f"{pins[name].name}=={pins[name].version}" for name in sorted(keep)]
    return "\n".join(lines) + "\n"


def compile_sets(torch_index: str | None) -> dict[str, str]:
    """Return {file name: content} for both sets."""
    warm_roots = project_requirements("serve", "warmup") + list(LAMBDA_RUNTIME)
    warm_roots.append(torch_pin(warm_roots))
    warm = resolve(warm_roots, arch="x86_64", extra_index=torch_index)
    if not warm["torch"].version.endswith("+cpu"):
        raise SystemExit(f"resolved torch {warm['torch'].version}, not a CPU-only build")
    warm_keep = reachable(warm, warm_roots, arch="x86_64")
    extra = set(warm) - warm_keep
    if extra:  # the dry run installs only what is needed; anything else is a walker bug
        raise SystemExit(f"unexpected packages in the warmup resolution: {sorted(extra)}")

    serve_roots = project_requirements("serve") + list(LAMBDA_RUNTIME)
    direct = {canonicalize_name(Requirement(r).name) for r in serve_roots}
    if direct & SERVE_BANNED:
        raise SystemExit(f"the serve extra asks for {sorted(direct & SERVE_BANNED)} directly")
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "warmup-pins.txt"
        constraints.write_text("".join(f"{p.name}=={p.version}\n" for p in warm.values()))
        serve = resolve(serve_roots, arch="x86_64", constraints=constraints)
    serve_keep: set[str] = set()
    for arch in ARCHES:  # keep what either architecture's markers reach
        serve_keep |= reachable(serve, serve_roots, arch=arch, banned=SERVE_BANNED | CLI_ONLY)
    cut = sorted(set(serve) - serve_keep)
    notes = (
        [
            "Cut on purpose (declared by a dependency's metadata or needed by the CLI only, never",
            "imported when serving):",
            "  " + ", ".join(f"{serve[n].name}=={serve[n].version}" for n in cut),
        ]
        if cut
        else []
    )
    return {
        "warmup.txt": render(
            "Warmup image: serve set + the compile side (CPU-only torch).",
            warm,
            warm_keep,
            "pip install --no-deps --only-binary=:all: "
            "--extra-index-url https://download.pytorch.org/whl/cpu -r requirements/warmup.txt",
            [],
        ),
        "serve.txt": render(
            "Predict and index images: onnxruntime, tokenizers, numpy; no torch, "
            "transformers, optimum or huggingface_hub.",
            serve,
            serve_keep,
            "pip install --no-deps --only-binary=:all: -r requirements/serve.txt",
            notes,
        ),
    }


def pinned_names(text: str) -> set[str]:
    return {
        canonicalize_name(line.split("==")[0])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def verify_arch(text: str, arch: str, *, skip: frozenset[str] = frozenset()) -> None:
    """Check that every pin has a wheel for ``arch`` (pip resolves the closed set, --no-deps)."""
    lines = [
        line
        for line in text.splitlines()
        if line and not line.startswith("#") and canonicalize_name(line.split("==")[0]) not in skip
    ]
    resolve(lines, arch=arch, no_deps=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    parser.add_argument(
        "--torch-index",
        default=None,
        help="extra index with torch's +cpu wheels (e.g. the PyTorch CPU index)",
    )
    args = parser.parse_args(argv)

    sets = compile_sets(args.torch_index)
    serve_names = pinned_names(sets["serve.txt"])
    if serve_names & SERVE_BANNED:
        raise SystemExit(f"serve set contains {sorted(serve_names & SERVE_BANNED)}")
    if not serve_names <= pinned_names(sets["warmup.txt"]):
        raise SystemExit("serve set is not a subset of the warmup set")
    for name, text in sets.items():
        # torch +cpu for aarch64 lives only on the PyTorch CPU index; the rest must be on PyPI.
        verify_arch(text, "aarch64", skip=frozenset({"torch"}))
        print(f"{name}: {len(pinned_names(text))} pins, wheels for x86_64 and aarch64")

    stale = [n for n, t in sets.items() if not (OUT / n).exists() or (OUT / n).read_text() != t]
    if args.check:
        if stale:
            print(f"stale: {', '.join(stale)} (run `make requirements`)", file=sys.stderr)
            return 1
        print("requirements are up to date")
        return 0
    for name, text in sets.items():
        (OUT / name).write_text(text)
    print(f"wrote {', '.join(sets)}" if stale else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())

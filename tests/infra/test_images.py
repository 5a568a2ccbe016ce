"""The Dockerfile, its requirement sets, the wheelhouse, CDK's image assets and the deploy docs
agree with each other (no Docker here: ``make image-test`` builds and runs the images)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
BANNED = {"torch", "transformers", "optimum", "optimum-onnx", "huggingface-hub"}
DOCKERFILE = (ROOT / "functions" / "Dockerfile").read_text()


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        if line and not line.startswith("#"):
            package, sep, version = line.partition("==")
            assert sep and version and " " not in line, f"not an exact pin: {line!r}"
            out[package] = version
    return out


def test_serve_set_is_lean_and_a_subset_of_the_warmup_set() -> None:
    serve, warmup = pins("serve.txt"), pins("warmup.txt")
    assert not BANNED & set(serve)
    assert {p: v for p, v in warmup.items() if p in serve} == serve, "shared packages have one version"
    assert {"onnxruntime", "tokenizers", "numpy", "awslambdaric"} <= set(serve)
    assert warmup["torch"].endswith("+cpu")
    assert {"transformers", "optimum-onnx", "huggingface-hub"} <= set(warmup)


def test_one_dockerfile_and_no_per_function_ones() -> None:
    assert not list((ROOT / "functions").glob("*/Dockerfile"))
    assert not (ROOT / "scripts" / "image_check.py").exists()


def test_sets_wheelhouse_and_base_agree_on_the_platform() -> None:
    from containers import base, wheelhouse

    compile_py = (ROOT / "requirements" / "compile.py").read_text()
    assert f"GLIBC_MINOR = {wheelhouse.GLIBC_MINOR} " in compile_py
    assert wheelhouse.GLIBC_MINOR == 36 and base.SUITE == "bookworm"  # Debian 12: glibc 2.36
    for name in ("serve.txt", "warmup.txt"):
        assert "glibc 2.36, Debian 12 bookworm" in (ROOT / "requirements" / name).read_text()
    assert f"ARG BASE={base.BASE_IMAGE}\n" in DOCKERFILE
    assert "python3.11" in base.PACKAGES[0]


def test_dockerfile_installs_offline_from_the_wheelhouse() -> None:
    install = re.search(r"RUN set -e; pip_wheel=.*?(?=\n\n)", DOCKERFILE, flags=re.S)
    assert install, "the install step"
    step = install.group(0)
    for flag in (
        "--no-index",
        "--find-links /tmp/wheels",
        "--no-deps",
        "--only-binary=:all:",
        "--target /var/task",
    ):
        assert flag in step
    assert "http" not in step and "--extra-index-url" not in DOCKERFILE  # the wheelhouse has torch
    assert 'ENTRYPOINT ["/bin/sh", "-c", "exec python3.11 -m awslambdaric' in DOCKERFILE
    assert "HOME=/tmp" in DOCKERFILE


@pytest.mark.parametrize("function", ["predict", "index", "warmup"])
def test_every_file_the_build_copies_is_in_the_cdk_allow_list(function: str) -> None:
    from cdk.model_function import IMAGE_REGISTRY_PATH, image_asset_files
    from containers.images import build_args

    args = build_args(function) | {"REGISTRY_FILE": "models.toml"}
    assert f"COPY ${{REGISTRY_FILE}} {IMAGE_REGISTRY_PATH}" in DOCKERFILE
    allowed = image_asset_files(function, "models.toml")
    assert "!functions/Dockerfile" in allowed
    for source in re.findall(r"^COPY (\S+) ", DOCKERFILE, flags=re.MULTILINE):
        if source.startswith("--from"):
            continue
        path = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], source)
        assert f"!{path}" in allowed, path
    other = {"predict": "index", "index": "warmup", "warmup": "predict"}[function]
    assert f"!functions/{other}" not in allowed


def test_image_assets_build_the_one_dockerfile_offline(synthesized: Synthesized) -> None:
    import json

    from containers.images import build_args

    images = [
        image
        for manifest in synthesized.outdir.glob("*.assets.json")
        for image in json.loads(manifest.read_text()).get("dockerImages", {}).values()
    ]
    seen = set()
    for image in images:
        source = image["source"]
        function = source["dockerBuildArgs"]["FUNCTION"]
        seen.add(function)
        assert source["dockerFile"] == "functions/Dockerfile"
        assert source["dockerBuildArgs"] == build_args(function, registry="models.toml")
        assert source["networkMode"] == "none"
        assert source["platform"] == "linux/amd64"
    assert seen == {"predict", "index", "warmup"}


def test_deploy_doc_lists_every_setting_and_runbook_every_alarm() -> None:
    from cdk.config import SETTINGS
    from cdk.monitoring import ALARMS

    deploy = (ROOT / "docs" / "deploy.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|", deploy, flags=re.MULTILINE)}
    assert table == set(SETTINGS)
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = set(re.findall(r"^## ([a-z0-9-]+)$", runbook, flags=re.MULTILINE))
    assert sections == set(ALARMS)


def test_deploy_doc_names_the_base_the_wheelhouse_and_attestations() -> None:
    from containers.base import BASE_IMAGE

    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for needle in (BASE_IMAGE, "make wheelhouse", "BUILDX_NO_DEFAULT_ATTESTATIONS=1", "make image-test"):
        assert needle in deploy, needle

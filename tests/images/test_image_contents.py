"""What is (and is not) inside the built images."""

from __future__ import annotations

import json

import pytest

from containers import images
from containers.images import BANNED, SERVING, tag
from tests.images.conftest import Stage

PROBE = (
    "import importlib.util, json, platform, sys; "
    "print(json.dumps({'found': [m for m in sys.argv[1:] if importlib.util.find_spec(m)], "
    "'python': platform.python_version(), 'glibc': platform.libc_ver()[1]}))"
)
DEV_ONLY = (*(f"hflambda.{m.removesuffix('.py')}" for m in images.DEV_ONLY), "moto", "pytest")


def probe(stage: Stage, function: str, *modules: str) -> dict[str, object]:
    out = stage.engine.docker(
        "run", "--rm", "--network", "none", "--read-only", "--user", stage.user,
        "--entrypoint", "python3.11", tag(function), "-c", PROBE, *modules,
    ).stdout  # fmt: skip
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("function", SERVING)
def test_serving_images_hold_none_of_the_compile_side(stage: Stage, function: str) -> None:
    result = probe(stage, function, *BANNED, "onnxruntime", "tokenizers")
    assert result["found"] == ["onnxruntime", "tokenizers"], result


def test_the_warmup_image_holds_the_compile_side(stage: Stage) -> None:
    result = probe(stage, "warmup", *BANNED)
    assert result["found"] == list(BANNED), result


@pytest.mark.parametrize("function", ["predict", "index", "warmup"])
def test_no_dev_only_code_and_the_base_python(stage: Stage, function: str) -> None:
    result = probe(stage, function, *DEV_ONLY)
    assert result["found"] == [], result
    assert str(result["python"]).startswith("3.11.") and result["glibc"] == "2.36"


@pytest.mark.parametrize("function", ["predict", "index", "warmup"])
def test_images_run_their_handler_through_the_runtime_client(stage: Stage, function: str) -> None:
    config = stage.engine.image_inspect(tag(function))["Config"]
    assert config["Entrypoint"][:3] == [
        "/bin/sh",
        "-c",
        'exec python3.11 -m awslambdaric "${1:-$HFLAMBDA_HANDLER}"',
    ]
    assert f"HFLAMBDA_HANDLER=functions.{function}.handler.handler" in config["Env"]
    assert "HOME=/tmp" in config["Env"]
    assert stage.engine.image_inspect(tag(function))["Architecture"] == "amd64"

"""Images, their dependency sets and the deploy docs agree with each other (no synthesis)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
BANNED = {"torch", "transformers", "optimum", "optimum-onnx", "huggingface-hub"}


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


@pytest.mark.parametrize("function", ["predict", "index", "warmup"])
def test_dockerfile_installs_its_set_and_lays_code_out_as_cdk_expects(function: str) -> None:
    from cdk.model_function import IMAGE_REGISTRY_PATH, REQUIREMENTS, image_asset_files

    dockerfile = (ROOT / "functions" / function / "Dockerfile").read_text()
    requirement = f"requirements/{REQUIREMENTS[function]}.txt"
    assert f"COPY {requirement} " in dockerfile
    assert re.search(r"pip install [^\n]*--no-deps", dockerfile)
    assert "--only-binary=:all:" in dockerfile
    assert f"COPY ${{REGISTRY_FILE}} {IMAGE_REGISTRY_PATH}" in dockerfile
    assert "COPY layers/hflambda /var/task/hflambda" in dockerfile
    assert f"COPY functions/{function} /var/task/functions/{function}" in dockerfile
    assert f'CMD ["functions.{function}.handler.handler"]' in dockerfile
    assert dockerfile.count("download.pytorch.org/whl/cpu") == (1 if function == "warmup" else 0)
    # every file the Dockerfile copies is in the CDK asset allow-list
    allowed = image_asset_files(function, "models.toml")
    for source in re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE):
        path = source.replace("${REGISTRY_FILE}", "models.toml")
        assert f"!{path}" in allowed, path


def test_image_check_installs_what_the_dockerfiles_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    from cdk.model_function import REQUIREMENTS

    spec = importlib.util.spec_from_file_location("image_check", ROOT / "scripts" / "image_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "image_check", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.FUNCTIONS == REQUIREMENTS


def test_deploy_doc_lists_every_setting_and_runbook_every_alarm() -> None:
    from cdk.config import SETTINGS
    from cdk.monitoring import ALARMS

    deploy = (ROOT / "docs" / "deploy.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|", deploy, flags=re.MULTILINE)}
    assert table == set(SETTINGS)
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = set(re.findall(r"^## ([a-z0-9-]+)$", runbook, flags=re.MULTILINE))
    assert sections == set(ALARMS)

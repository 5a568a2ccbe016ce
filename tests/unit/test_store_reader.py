"""The store reader says precisely why an alias cannot be served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hflambda.errors import ModelNotReady, StoreCorrupt, StoreUnreadable
from hflambda.store import Manifest, ModelStore


def publish_dummy(
    store: ModelStore, alias: str = "m", revision: str = "r1", payload: bytes = b"weights"
) -> Path:
    staging = store.new_staging(alias)
    (staging / "model.onnx").write_bytes(payload)
    (staging / "sub").mkdir()
    (staging / "sub" / "a.json").write_text("{}")
    manifest = Manifest(
        alias=alias,
        repo="org/m",
        revision=revision,
        source="file:///x",
        task="embeddings",
        export={"q": None},
    )
    return store.publish(staging, manifest).path


def test_not_warmed(tmp_path: Path) -> None:
    with pytest.raises(ModelNotReady, match="does not exist; run warmup"):
        ModelStore(tmp_path / "nope").resolve("m")
    tmp_path.joinpath("store").mkdir()
    with pytest.raises(ModelNotReady, match="not warmed"):
        ModelStore(tmp_path / "store").resolve("m")


def test_publish_then_resolve(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    path = publish_dummy(store)
    model = store.resolve("m")
    assert model.path == path == tmp_path / "m" / "r1"
    assert (tmp_path / "m" / "CURRENT").read_text().strip() == "r1"
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.onnx", "sub/a.json"}
    assert manifest["files"]["model.onnx"]["size"] == 7
    assert not list((tmp_path / ".staging").iterdir())


def test_manifest_missing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    path = publish_dummy(store)
    (path / "manifest.json").unlink()
    with pytest.raises(StoreCorrupt, match="manifest missing"):
        ModelStore(tmp_path).resolve("m")


def test_size_and_hash_mismatch(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    path = publish_dummy(store)
    (path / "model.onnx").write_bytes(b"WEIGHTS")  # same size, other bytes
    with pytest.raises(StoreCorrupt, match="hash mismatch"):
        ModelStore(tmp_path).resolve("m")
    (path / "model.onnx").write_bytes(b"short")
    with pytest.raises(StoreCorrupt, match="size mismatch"):
        ModelStore(tmp_path).resolve("m")
    (path / "model.onnx").unlink()
    with pytest.raises(StoreCorrupt, match="file missing"):
        ModelStore(tmp_path).resolve("m")


def test_current_names_missing_directory(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_dummy(store)
    (tmp_path / "m" / "CURRENT").write_text("gone\n")
    with pytest.raises(StoreCorrupt, match="does not exist"):
        store.resolve("m")


def test_republish_same_revision_keeps_the_live_one(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_dummy(store, payload=b"one")
    staging = store.new_staging("m")
    (staging / "model.onnx").write_bytes(b"two")
    manifest = Manifest(
        alias="m", repo="org/m", revision="r1", source="file:///x", task="embeddings", export={"q": "int8"}
    )
    published = store.publish(staging, manifest)
    assert published.path.name.startswith("r1.")  # other export settings: a new directory
    assert (tmp_path / "m" / "r1" / "model.onnx").read_bytes() == b"one"
    assert store.resolve("m").path == published.path


def test_an_unreadable_store_is_not_mistaken_for_not_warmed(tmp_path: Path) -> None:
    # a file where the store's folder should be (an EFS mount that failed, a wrong path)
    root = tmp_path / "models"
    root.write_text("not a folder")
    store = ModelStore(root)
    with pytest.raises(StoreUnreadable) as caught:
        store.current_name("embed")
    assert caught.value.status == 503 and caught.value.code == "model_store_unreadable"
    assert str(root / "embed" / "CURRENT") in str(caught.value) and "HFLAMBDA_MODEL_STORE" in str(
        caught.value
    )
    with pytest.raises(StoreUnreadable):
        store.resolve("embed")

"""A new embedding model revision: search only compares vectors of the live revision, and
``hflambda reindex`` re-embeds the stored text into it (real ONNX model, real CLI)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from hflambda.poller import LocalContext, build_event
from hflambda.vectors import VectorSpace, get_vector_store
from tests.fixtures.models import Warmed, clear_caches, fresh_module

pytestmark = pytest.mark.integration


@pytest.fixture
def own_store(serve_env: Warmed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the warmed ``embed`` model, so the test can publish a 'new revision'."""
    store = tmp_path / "store"
    shutil.copytree(serve_env.store / "embed", store / "embed")
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", str(store))
    monkeypatch.setenv("HFLAMBDA_VECTOR_URI", str(tmp_path / "vectors"))
    clear_caches()
    yield store
    clear_caches()


def publish_copy_as_new_revision(store: Path) -> str:
    """Same files under a new revision directory, CURRENT swapped (what warmup does)."""
    current = (store / "embed" / "CURRENT").read_text().strip()
    new = f"{current}.next"
    shutil.copytree(store / "embed" / current, store / "embed" / new)
    (store / "embed" / "CURRENT").write_text(new + "\n")
    return new


def index(module: ModuleType, docs: dict[str, str]) -> None:
    messages = [
        {
            "MessageId": f"m-{doc}",
            "ReceiptHandle": "rh",
            "Body": json.dumps(
                {"v": 1, "op": "upsert", "user_id": "alice", "ts": 1, "document": {"id": doc, "text": text}}
            ),
            "Attributes": {},
        }
        for doc, text in docs.items()
    ]
    assert module.handler(build_event(messages, "arn:aws:sqs:us-east-1:0:q"), LocalContext()) == {
        "batchItemFailures": []
    }


def search(module: ModuleType, query: str) -> tuple[str, list[str]]:
    embedder = module.indexer.embedder()
    space = VectorSpace.of(embedder)
    hits = get_vector_store().search("alice", embedder.embed([query])[0], space=space, top_k=5)
    return space.revision, [h.document_id for h in hits]


def test_new_revision_searches_only_its_own_vectors_until_reindexed(own_store: Path) -> None:
    from hflambda.cli import app

    module = fresh_module("functions.index.handler")
    index(
        module,
        {"boat": "A sailing boat crossed the bay at dawn.", "bread": "Knead the dough and bake the bread."},
    )
    old_revision, hits = search(module, "sailing")
    assert hits[0] == "boat"

    new_revision = publish_copy_as_new_revision(own_store)
    revision, hits = search(module, "sailing")  # the pool picks the new revision up by itself
    assert revision == new_revision != old_revision
    assert hits == []  # vectors of the old revision are never compared with the new one

    runner = CliRunner(env={"COLUMNS": "300"})
    result = runner.invoke(app, ["reindex"])
    assert result.exit_code == 0, result.output
    assert "2 document(s)" in result.stdout and new_revision in result.stdout
    assert search(module, "sailing") == (new_revision, ["boat", "bread"])
    again = runner.invoke(app, ["reindex"])
    assert again.exit_code == 0 and "0 document(s)" in again.stdout
    maintained = runner.invoke(app, ["vectors", "maintain"])
    assert maintained.exit_code == 0 and "chunks_384" in maintained.stdout

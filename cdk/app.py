"""Entry point: ``cdk synth`` (cdk.json runs ``python -m cdk.app``) or ``build_app()`` in tests.

Four stacks, composed here in dependency order: network -> storage -> service -> monitoring.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, App, Environment, Tags

from cdk import nag
from cdk.config import EXAMPLE_ISSUER, REPO_ROOT, DeployConfig
from cdk.monitoring import MonitoringStack, Watched
from cdk.network import NetworkStack
from cdk.service import ServiceStack
from cdk.storage import StorageStack
from hflambda.registry import check_registry


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` block of cdk.json, which the CDK CLI would pass in (feature flags)."""
    path = REPO_ROOT / "cdk.json"
    return dict(json.loads(path.read_text()).get("context", {})) if path.exists() else {}


def build_app(
    context: dict[str, Any] | None = None, *, outdir: str | Path | None = None, with_nag: bool = True
) -> App:
    """The app with its four stacks (not yet synthesized)."""
    merged = cdk_json_context()
    merged.update(context or {})
    app = App(context=merged, outdir=str(outdir) if outdir else None)
    config = DeployConfig.from_node(app.node)

    problems = check_registry(
        config.registry_path,
        profile="aws",
        # the serving default: 60% of the predict function's memory for loaded models
        memory_budget_mb=config.predict_memory_mb * 6 // 10,
        function_memory_mb=config.predict_memory_mb,
    )
    if problems:
        raise ValueError(f"registry {config.registry} is invalid:\n  " + "\n  ".join(problems))

    env = None
    if config.account or config.region:
        env = Environment(account=config.account or None, region=config.region or None)
    prefix = config.stack_prefix
    network = NetworkStack(
        app,
        f"{prefix}Network",
        config=config,
        env=env,
        description="hflambda: VPC, endpoints, NAT for warmup",
    )
    storage = StorageStack(
        app,
        f"{prefix}Storage",
        config=config,
        env=env,
        vpc=network.vpc,
        subnets=network.serving_subnets,
        description="hflambda: model store (EFS), vectors bucket, index queue, HF token secret",
    )
    service = ServiceStack(
        app,
        f"{prefix}Service",
        config=config,
        env=env,
        vpc=network.vpc,
        serving_subnets=network.serving_subnets,
        warmup_subnets=network.warmup_subnets,
        storage=storage,
        description="hflambda: predict API, index consumer, warmup",
    )
    MonitoringStack(
        app,
        f"{prefix}Monitoring",
        config=config,
        env=env,
        watched=Watched(
            http_api=service.api.http_api,
            predict=service.predict,
            index=service.index,
            warmup=service.warmup,
            index_queue=storage.index_queue,
            dead_letters=storage.dead_letters,
        ),
        description="hflambda: alarms and dashboard",
    )
    Tags.of(app).add("project", "hflambda")
    if config.auth_issuer == EXAMPLE_ISSUER:
        Annotations.of(service).add_warning_v2(
            "hflambda:placeholder-issuer",
            f"auth_issuer is the placeholder {EXAMPLE_ISSUER}: every authenticated request will "
            "be rejected. Deploy with -c auth_issuer=https://<your Clerk Frontend API>.",
        )
    if with_nag:
        nag.enable(app)
    return app


def main() -> None:
    build_app(outdir=os.environ.get("CDK_OUTDIR")).synth()


if __name__ == "__main__":
    main()

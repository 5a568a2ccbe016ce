"""The rehearsal reads what it runs from the cloud assembly: change the template, it follows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rehearsal.aws import PROVISIONED_TYPES, Moto, aws_providers
from rehearsal.functions import retries_for
from rehearsal.stack import function_environment
from rehearsal.template import (
    Assembly,
    Resolver,
    async_invoke_configs,
    event_source_specs,
    function_specs,
    warmup_triggers,
)


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto().start()
    try:
        yield server
    finally:
        server.stop()


def _templates(outdir: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name.removesuffix(".template.json"): json.loads(p.read_text())
        for p in outdir.glob("*.template.json")
    }


def _resource(
    templates: dict[str, dict[str, Any]], kind: str, logical_prefix: str
) -> tuple[str, str, dict[str, Any]]:
    for stack, template in templates.items():
        for logical, resource in template["Resources"].items():
            if resource["Type"] == kind and logical.startswith(logical_prefix):
                return stack, logical, resource
    raise AssertionError(f"no {kind} {logical_prefix}* in the assembly")


def _load(outdir: Path, moto: Moto, store: Path) -> Resolver:
    resolver = Resolver(Assembly(outdir), aws_providers(moto, store))
    resolver.provision_all(set(PROVISIONED_TYPES))
    return resolver


def _copy(assembly: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cdk.out"
    shutil.copytree(assembly, copy, ignore=shutil.ignore_patterns("asset.*"))
    return copy


def _edit(outdir: Path, stack: str, change: Any) -> None:
    path = outdir / f"{stack}.template.json"
    template = json.loads(path.read_text())
    change(template)
    path.write_text(json.dumps(template))


def test_functions_are_what_the_template_declares(assembly: Path, moto: Moto, tmp_path: Path) -> None:
    templates = _templates(assembly)
    specs = function_specs(_load(assembly, moto, tmp_path))
    assert set(specs) == {"predict", "index", "warmup"}
    for name, spec in specs.items():
        _, _, resource = _resource(templates, "AWS::Lambda::Function", name.capitalize() + "Function")
        props = resource["Properties"]
        assert spec.memory_mb == props["MemorySize"]
        assert spec.timeout_s == props["Timeout"]
        assert spec.ephemeral_mb == props["EphemeralStorage"]["Size"]
        assert list(spec.command) == props["ImageConfig"]["Command"]
        assert spec.architecture == props["Architectures"][0]
        literal = {k: v for k, v in props["Environment"]["Variables"].items() if isinstance(v, str)}
        assert literal.items() <= spec.environment.items()
        assert set(spec.environment) == set(props["Environment"]["Variables"])
        assert not any("Fn::" in v or "'Ref'" in v for v in spec.environment.values())


def test_a_change_in_the_template_changes_the_rehearsal(assembly: Path, moto: Moto, tmp_path: Path) -> None:
    """Memory and an environment variable edited in the template reach the function as run."""
    copy = _copy(assembly, tmp_path)
    stack, logical, _ = _resource(_templates(copy), "AWS::Lambda::Function", "PredictFunction")

    def change(template: dict[str, Any]) -> None:
        props = template["Resources"][logical]["Properties"]
        props["MemorySize"] = 1769
        props["Environment"]["Variables"]["HFLAMBDA_MAX_BATCH"] = "64"

    _edit(copy, stack, change)
    spec = function_specs(_load(copy, moto, tmp_path / "store"))["predict"]
    assert spec.memory_mb == 1769
    env = function_environment(spec, moto_url=moto.url, hub_url=None, issuers={})
    assert env["HFLAMBDA_MAX_BATCH"] == "64"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1769"


def test_references_resolve_to_the_local_resources(assembly: Path, moto: Moto, tmp_path: Path) -> None:
    """Cross-stack imports become the moto queue URL and secret ARN the functions use."""
    resolver = _load(assembly, moto, tmp_path)
    specs = function_specs(resolver)
    sqs, secrets = moto.client("sqs"), moto.client("secretsmanager")
    queue_url = specs["predict"].environment["HFLAMBDA_INDEX_QUEUE_URL"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    templates = _templates(assembly)
    _, _, queue = _resource(templates, "AWS::SQS::Queue", "IndexQueue")
    assert attributes["VisibilityTimeout"] == str(queue["Properties"]["VisibilityTimeout"])
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == queue["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    dlq_arn = redrive["deadLetterTargetArn"]
    assert any(p.attrs.get("Arn") == dlq_arn for p in resolver.physical.values())
    _, _, secret = _resource(templates, "AWS::SecretsManager::Secret", "HfToken")
    value = secrets.get_secret_value(SecretId=specs["warmup"].environment["HFLAMBDA_HF_TOKEN_SECRET"])[
        "SecretString"
    ]
    assert value == secret["Properties"]["SecretString"]


def test_store_mounts_follow_the_functions_iam(assembly: Path, moto: Moto, tmp_path: Path) -> None:
    """Read-only where the role grants ClientMount only; editing the grant makes it writable."""
    specs = function_specs(_load(assembly, moto, tmp_path))
    assert [m.read_only for m in specs["predict"].mounts] == [True]
    assert [m.read_only for m in specs["index"].mounts] == [True]
    assert [m.read_only for m in specs["warmup"].mounts] == [False]
    mount = specs["predict"].mounts[0]
    assert (mount.uid, mount.gid) == (1001, 1001)
    assert (tmp_path / mount.root_path.strip("/")).is_dir()

    copy = _copy(assembly, tmp_path)
    stack, logical, _ = _resource(
        _templates(copy), "AWS::IAM::Policy", "PredictFunctionServiceRoleDefaultPolicy"
    )

    def grant_write(template: dict[str, Any]) -> None:
        for statement in template["Resources"][logical]["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Action") == "elasticfilesystem:ClientMount":
                statement["Action"] = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]

    _edit(copy, stack, grant_write)
    edited = function_specs(_load(copy, moto, tmp_path / "store2"))
    assert [m.read_only for m in edited["predict"].mounts] == [False]


def test_event_source_and_triggers_as_declared(assembly: Path, moto: Moto, tmp_path: Path) -> None:
    resolver = _load(assembly, moto, tmp_path)
    specs = function_specs(resolver)
    templates = _templates(assembly)
    (source,) = event_source_specs(resolver, specs)
    _, _, mapping = _resource(templates, "AWS::Lambda::EventSourceMapping", "IndexFunction")
    assert source.function.function == "index"
    assert source.batch_size == mapping["Properties"]["BatchSize"]
    assert source.batching_window_s == mapping["Properties"]["MaximumBatchingWindowInSeconds"]
    assert source.max_concurrency == mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert source.report_batch_item_failures
    triggers = {t.kind: t for t in warmup_triggers(resolver, specs)}
    assert set(triggers) == {"after-deploy", "schedule"}
    after_deploy, schedule = triggers["after-deploy"], triggers["schedule"]
    assert after_deploy.function.function == schedule.function.function == "warmup"
    assert after_deploy.payload == {} and after_deploy.invocation_type == "Event"
    assert schedule.payload["detail-type"] == "Scheduled Event"
    # The design: a crashed after-deploy warmup is not retried (the schedule runs it again).
    # Lambda applies the EventInvokeConfig of the qualifier invoked, so this holds only if the
    # config covers the version the trigger invokes.
    configs = async_invoke_configs(resolver, specs)
    assert retries_for(configs, after_deploy.function, after_deploy.qualifier) == 0
    assert retries_for(configs, schedule.function, schedule.qualifier) == 0

"""The deployment's promises, pinned on the synthesized templates (one synth per session)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

HANDLERS = {
    "predict": "functions.predict.handler.handler",
    "index": "functions.index.handler.handler",
    "warmup": "functions.warmup.handler.handler",
}


# --- helpers over raw template JSON -------------------------------------------------------


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def function(synth: Synthesized, name: str) -> tuple[str, dict[str, Any]]:
    """(logical id, properties) of the Lambda function running ``name``'s handler."""
    service = synth.stack("Service")
    found = [
        (logical_id, res["Properties"])
        for logical_id, res in resources(service, "AWS::Lambda::Function").items()
        if res["Properties"].get("ImageConfig", {}).get("Command") == [HANDLERS[name]]
    ]
    assert len(found) == 1, f"expected one {name} function, found {len(found)}"
    return found[0]


def role_statements(synth: Synthesized, name: str) -> list[dict[str, Any]]:
    """Every identity-policy statement attached to ``name``'s execution role."""
    service = synth.stack("Service")
    _, props = function(synth, name)
    role_id = props["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in resources(service, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    role = service["Resources"][role_id]["Properties"]
    for inline in role.get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def actions(statements: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        acts = statement["Action"]
        out |= {acts} if isinstance(acts, str) else set(acts)
    return out


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


# --- model store: read-only for serving --------------------------------------------------


@pytest.mark.parametrize("name", ["predict", "index"])
def test_serving_functions_mount_the_store_read_only(synthesized: Synthesized, name: str) -> None:
    granted = {a for a in actions(role_statements(synthesized, name)) if a.startswith("elasticfilesystem:")}
    assert granted == {"elasticfilesystem:ClientMount"}
    _, props = function(synthesized, name)
    assert [c["LocalMountPath"] for c in props["FileSystemConfigs"]] == ["/mnt/models"]


def test_warmup_is_the_only_store_writer(synthesized: Synthesized) -> None:
    granted = actions(role_statements(synthesized, "warmup"))
    assert {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"} <= granted
    assert "elasticfilesystem:ClientRootAccess" not in granted
    for name in ("predict", "index"):
        assert "elasticfilesystem:ClientWrite" not in actions(role_statements(synthesized, name))


def test_store_mount_is_pinned_to_the_access_point(synthesized: Synthesized) -> None:
    for name in HANDLERS:
        efs_statements = [
            s
            for s in role_statements(synthesized, name)
            if "elasticfilesystem:ClientMount" in str(s["Action"])
        ]
        assert efs_statements and all(
            "elasticfilesystem:AccessPointArn" in s["Condition"]["StringEquals"] for s in efs_statements
        )


def test_file_system_policy_makes_iam_decide_and_grants_nobody_write(synthesized: Synthesized) -> None:
    from aws_cdk.assertions import Match

    storage = synthesized.template("Storage")
    storage.has_resource_properties(
        "AWS::EFS::FileSystem",
        {"Encrypted": True, "ThroughputMode": "elastic", "FileSystemPolicy": Match.object_like({})},
    )
    (fs,) = resources(synthesized.stack("Storage"), "AWS::EFS::FileSystem").values()
    for statement in fs["Properties"]["FileSystemPolicy"]["Statement"]:
        principal = statement["Principal"]
        # Never the anonymous "anyone on the network" grant CDK adds by default.
        assert principal != "*" and principal.get("AWS") != "*", statement
        assert "elasticfilesystem:ClientRootAccess" not in str(statement["Action"])
    storage.has_resource_properties(
        "AWS::EFS::AccessPoint",
        {
            "PosixUser": {"Uid": "1001", "Gid": "1001"},
            "RootDirectory": Match.object_like({"Path": "/models"}),
        },
    )


# --- API ---------------------------------------------------------------------------------


def test_jwt_authorizer_on_every_route_but_health(synthesized: Synthesized) -> None:
    service = synthesized.stack("Service")
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources(service, "AWS::ApiGatewayV2::Route").values()
    }
    assert "GET /health" in routes and len(routes) >= 2
    for key, route in routes.items():
        if key == "GET /health":
            assert route["AuthorizationType"] == "NONE"
        else:
            assert route["AuthorizationType"] == "JWT", key
            assert "AuthorizerId" in route, key
    (authorizer,) = resources(service, "AWS::ApiGatewayV2::Authorizer").values()
    jwt = authorizer["Properties"]["JwtConfiguration"]
    assert jwt["Issuer"].startswith("https://") and jwt["Audience"]


def test_api_uses_payload_v2_stage_throttling_and_access_logs(synthesized: Synthesized) -> None:
    from aws_cdk.assertions import Match

    service = synthesized.template("Service")
    service.has_resource_properties(
        "AWS::ApiGatewayV2::Integration", {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"}
    )
    service.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AccessLogSettings": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp("requestId"),
            },
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": Match.any_value(),
                "ThrottlingBurstLimit": Match.any_value(),
            },
        },
    )


def _routes(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources(synth.stack("Service"), "AWS::ApiGatewayV2::Route").values()
    }


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_nat_instance"])
def test_no_authorized_route_matches_a_cors_preflight(variant: str, request: pytest.FixtureRequest) -> None:
    # A route matching OPTIONS (ANY or OPTIONS) with the JWT authorizer sends a browser's
    # preflight, which carries no Authorization header, to the authorizer: 401. With explicit
    # methods, no route matches OPTIONS and API Gateway answers the preflight from the CORS
    # configuration itself (docs: "Configure CORS for HTTP APIs").
    synth: Synthesized = request.getfixturevalue(variant)
    routes = _routes(synth)
    for key, route in routes.items():
        method = key.split(" ", 1)[0]
        if route["AuthorizationType"] != "NONE":
            assert method not in {"ANY", "OPTIONS", "$default"}, key
    assert {"GET /{proxy+}", "POST /{proxy+}", "DELETE /{proxy+}"} <= set(routes)


def test_cors_configuration_admits_the_browser_preflight(synthesized_nat_instance: Synthesized) -> None:
    (api,) = resources(synthesized_nat_instance.stack("Service"), "AWS::ApiGatewayV2::Api").values()
    cors = api["Properties"]["CorsConfiguration"]
    assert cors["AllowOrigins"] == ["https://app.example.com"]
    assert {"authorization", "content-type"} <= {h.lower() for h in cors["AllowHeaders"]}
    allowed = set(cors["AllowMethods"])
    assert "*" in allowed or {"GET", "POST", "DELETE"} <= allowed


# --- index queue --------------------------------------------------------------------------


def test_queue_visibility_is_six_times_index_timeout_with_dlq(synthesized: Synthesized) -> None:
    storage = synthesized.stack("Storage")
    _, index = function(synthesized, "index")
    queues = resources(storage, "AWS::SQS::Queue")
    with_redrive = [q["Properties"] for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert len(with_redrive) == 1
    queue = with_redrive[0]
    assert queue["VisibilityTimeout"] >= 6 * index["Timeout"]
    dlq_id = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq_id in queues and queue["RedrivePolicy"]["maxReceiveCount"] >= 1
    for q in queues.values():  # SSE on both
        assert q["Properties"].get("SqsManagedSseEnabled") is True


def test_index_event_source_reports_partial_failures_and_caps_concurrency(synthesized: Synthesized) -> None:
    from aws_cdk.assertions import Match

    index_id, _ = function(synthesized, "index")
    synthesized.template("Service").has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": index_id},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": Match.any_value()},
            "BatchSize": Match.any_value(),
            "MaximumBatchingWindowInSeconds": Match.any_value(),
        },
    )


def test_predict_may_send_to_the_queue_and_index_may_not_write_the_store(synthesized: Synthesized) -> None:
    assert "sqs:SendMessage" in actions(role_statements(synthesized, "predict"))
    assert "sqs:SendMessage" not in actions(role_statements(synthesized, "warmup"))


# --- warmup -------------------------------------------------------------------------------


def test_warmup_runs_alone_for_up_to_15_minutes_on_a_schedule_and_after_deploy(
    synthesized: Synthesized,
) -> None:
    warmup_id, warmup = function(synthesized, "warmup")
    assert warmup["Timeout"] == 900
    service = synthesized.stack("Service")
    rules = [r["Properties"] for r in resources(service, "AWS::Events::Rule").values()]
    assert any(
        t["Arn"] == {"Fn::GetAtt": [warmup_id, "Arn"]}
        for r in rules
        if "ScheduleExpression" in r
        for t in r["Targets"]
    )
    triggers = resources(service, "Custom::Trigger")
    assert len(triggers) == 1
    (trigger,) = triggers.values()
    version = service["Resources"][trigger["Properties"]["HandlerArn"]["Ref"]]
    assert version["Type"] == "AWS::Lambda::Version"
    assert version["Properties"]["FunctionName"] == {"Ref": warmup_id}
    assert trigger["Properties"]["InvocationType"] == "Event"  # a deploy never waits on warmup


def test_warmup_is_not_retried_by_lambda_on_any_qualifier_it_is_invoked_on(synthesized: Synthesized) -> None:
    # The schedule invokes the unqualified function ($LATEST), the after-deploy trigger the
    # published version: each needs its own no-retry EventInvokeConfig, in place before the trigger.
    warmup_id, _ = function(synthesized, "warmup")
    service = synthesized.stack("Service")
    (trigger_id, trigger) = next(iter(resources(service, "Custom::Trigger").items()))
    version_id = trigger["Properties"]["HandlerArn"]["Ref"]
    configs = {
        k: v["Properties"]
        for k, v in resources(service, "AWS::Lambda::EventInvokeConfig").items()
        if v["Properties"]["FunctionName"] == {"Ref": warmup_id}
    }
    by_qualifier = {json.dumps(c["Qualifier"]): (k, c) for k, c in configs.items()}
    latest = by_qualifier['"$LATEST"'][1]
    assert latest["MaximumRetryAttempts"] == 0
    (config_id, published) = by_qualifier[json.dumps({"Fn::GetAtt": [version_id, "Version"]})]
    assert published["MaximumRetryAttempts"] == 0
    assert config_id in service["Resources"][trigger_id].get("DependsOn", [])


def test_defaults_fit_a_new_accounts_lambda_quotas(synthesized: Synthesized) -> None:
    # New accounts: 3008 MB per function and a total concurrency of 10, of which Lambda keeps
    # an unreserved floor of 10, so any reserved concurrency fails the Service stack.
    for name in HANDLERS:
        _, props = function(synthesized, name)
        assert props["MemorySize"] <= 3008, name
        assert "ReservedConcurrentExecutions" not in props, name


def test_warmup_reserved_concurrency_is_opt_in_and_synth_warns_about_the_quota_it_needs(
    synthesized_nat_instance: Synthesized,
) -> None:
    from cdk.config import DeployConfig

    _, warmup = function(synthesized_nat_instance, "warmup")
    assert warmup["ReservedConcurrentExecutions"] == 1
    metadata = (synthesized_nat_instance.outdir / "HflambdaService.metadata.json").read_text()
    assert "hflambda:lambda-quota" in metadata and "at least 101" in metadata
    assert DeployConfig().quota_warnings() == []
    (memory,) = DeployConfig(warmup_memory_mb=8192).quota_warnings()
    assert "warmup_memory_mb=8192" in memory and "3008 MB" in memory


# --- secrets ------------------------------------------------------------------------------


def test_only_warmup_may_read_the_hf_token(synthesized: Synthesized) -> None:
    for name in ("predict", "index"):
        assert not any(a.startswith("secretsmanager:") for a in actions(role_statements(synthesized, name)))
    assert "secretsmanager:GetSecretValue" in actions(role_statements(synthesized, "warmup"))
    _, warmup = function(synthesized, "warmup")
    assert "HFLAMBDA_HF_TOKEN_SECRET" in warmup["Environment"]["Variables"]
    for name in ("predict", "index"):
        _, props = function(synthesized, name)
        assert "HFLAMBDA_HF_TOKEN_SECRET" not in props["Environment"]["Variables"]


def test_hf_token_secret_is_created_with_instructions(synthesized: Synthesized) -> None:
    from aws_cdk.assertions import Match

    synthesized.template("Storage").has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"Description": Match.string_like_regexp("put-secret-value"), "SecretString": "unset"},
    )


# --- retained state ---------------------------------------------------------------------

# Properties that set an account- or region-unique physical name. A retained resource must
# not have one: after `cdk destroy` it stays, and the next `cdk deploy` fails creating its
# namesake. (Names scoped inside a CloudFormation-named parent, such as an index inside its
# bucket, cannot collide and are not listed.)
PHYSICAL_NAMES = (
    "BucketName",
    "VectorBucketName",
    "TableName",
    "QueueName",
    "TopicName",
    "LogGroupName",
    "FileSystemName",
    "RepositoryName",
    "Name",
)


def _retained(synth: Synthesized) -> dict[str, dict[str, Any]]:
    out = {}
    for stack, template in synth.raw.items():
        for logical_id, res in template["Resources"].items():
            policies = {res.get("DeletionPolicy"), res.get("UpdateReplacePolicy")}
            if policies & {"Retain", "RetainExceptOnCreate", "Snapshot"}:
                out[f"{stack}/{logical_id}"] = res
    return out


@pytest.mark.parametrize("variant", ["synthesized", "synthesized_nat_instance"])
def test_no_retained_resource_has_a_fixed_name(variant: str, request: pytest.FixtureRequest) -> None:
    retained = _retained(request.getfixturevalue(variant))
    assert retained, "the users' data (documents, vectors) is retained"
    for where, res in retained.items():
        fixed = [p for p in PHYSICAL_NAMES if p in res.get("Properties", {})]
        assert not fixed, f"{where} ({res['Type']}) is retained and names itself {fixed}"


# --- vectors: S3 Vectors index + DynamoDB catalogue -----------------------------------------


def test_vector_index_and_catalogue_are_retained_encrypted_and_as_the_code_expects(
    synthesized: Synthesized,
) -> None:
    from hflambda.vectors.aws import NON_FILTERABLE_KEYS

    storage = synthesized.stack("Storage")
    (bucket,) = resources(storage, "AWS::S3Vectors::VectorBucket").values()
    assert (
        bucket["DeletionPolicy"] == "Retain"
        and bucket["Properties"]["EncryptionConfiguration"]["SseType"] == "AES256"
    )
    (index,) = resources(storage, "AWS::S3Vectors::Index").values()
    props = index["Properties"]
    assert index["DeletionPolicy"] == "Retain"
    assert (props["DataType"], props["Dimension"], props["DistanceMetric"]) == ("float32", 384, "cosine")
    assert props["MetadataConfiguration"]["NonFilterableMetadataKeys"] == NON_FILTERABLE_KEYS
    assert not resources(storage, "AWS::S3::Bucket"), "LanceDB's S3 bucket is gone"
    (table,) = resources(storage, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain" and props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["pk", "sk"]


def test_vector_grants_are_least_privilege_per_function(synthesized: Synthesized) -> None:
    predict = actions(role_statements(synthesized, "predict"))
    index = actions(role_statements(synthesized, "index"))
    warmup = actions(role_statements(synthesized, "warmup"))
    assert {"s3vectors:QueryVectors", "s3vectors:GetVectors", "dynamodb:BatchGetItem"} <= predict
    assert not {
        a
        for a in predict
        if a in ("s3vectors:PutVectors", "s3vectors:DeleteVectors", "dynamodb:UpdateItem", "dynamodb:Scan")
    }
    assert {
        "s3vectors:PutVectors",
        "s3vectors:DeleteVectors",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
    } <= index
    assert "s3vectors:QueryVectors" not in index and "dynamodb:Scan" not in index
    assert {
        "s3vectors:DeleteVectors",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
    } <= warmup and "s3vectors:PutVectors" not in warmup
    assert not any(
        a.startswith("s3:") and a != "s3:GetObject" for a in predict | index
    )  # no LanceDB bucket grants
    for name in ("predict", "index", "warmup"):
        _, fn = function(synthesized, name)
        env = fn["Environment"]["Variables"]
        assert (
            env["HFLAMBDA_VECTOR_BACKEND"] == "aws"
            and "HFLAMBDA_VECTOR_INDEX" in env
            and "HFLAMBDA_VECTOR_TABLE" in env
        )
        assert "HFLAMBDA_VECTOR_URI" not in env


# --- network ------------------------------------------------------------------------------


def test_serving_subnets_have_no_route_out_and_endpoints_exist(synthesized: Synthesized) -> None:
    network = synthesized.stack("Network")
    routes = resources(network, "AWS::EC2::Route")
    for route in routes.values():
        table = route["Properties"]["RouteTableId"]["Ref"]
        if "NatGatewayId" in route["Properties"] or "InstanceId" in route["Properties"]:
            assert "egress" in table, f"serving route table {table} routes to a NAT"
    endpoints = [e["Properties"] for e in resources(network, "AWS::EC2::VPCEndpoint").values()]
    names = json.dumps([e["ServiceName"] for e in endpoints])
    assert ".s3" in names and "sqs" in names and "secretsmanager" in names
    assert "dynamodb" in names and "s3vectors" in names  # the vector catalogue and index
    _, predict = function(synthesized, "predict")
    _, warmup = function(synthesized, "warmup")
    assert "serving" in json.dumps(predict["VpcConfig"]["SubnetIds"])
    assert "egress" in json.dumps(warmup["VpcConfig"]["SubnetIds"])


def test_nat_instance_is_reachable_from_the_egress_subnets_and_has_a_public_address(
    synthesized_nat_instance: Synthesized,
) -> None:
    import ipaddress

    network = synthesized_nat_instance.stack("Network")
    egress = [
        ipaddress.ip_network(s["Properties"]["CidrBlock"])
        for k, s in resources(network, "AWS::EC2::Subnet").items()
        if "egress" in k
    ]
    assert egress
    instances = resources(network, "AWS::EC2::Instance")
    assert instances
    eips = [e["Properties"] for e in resources(network, "AWS::EC2::EIP").values()]
    for instance_id, instance in instances.items():
        props = instance["Properties"]
        assert props["SourceDestCheck"] is False
        interfaces = props.get("NetworkInterfaces", [])
        public = any(i.get("AssociatePublicIpAddress") is True for i in interfaces) or any(
            e.get("InstanceId") == {"Ref": instance_id} for e in eips
        )
        assert public, "a NAT instance without a public address forwards nothing to the internet"
        groups = props.get("SecurityGroupIds", []) + [g for i in interfaces for g in i.get("GroupSet", [])]
        group_ids = {g["Fn::GetAtt"][0] for g in groups}
        assert group_ids
        ingress = [
            rule
            for gid in group_ids
            for rule in network["Resources"][gid]["Properties"].get("SecurityGroupIngress", [])
        ] + [
            r["Properties"]
            for r in resources(network, "AWS::EC2::SecurityGroupIngress").values()
            if r["Properties"]["GroupId"]["Fn::GetAtt"][0] in group_ids
        ]
        for subnet in egress:
            assert any(
                "CidrIp" in rule
                and subnet.subnet_of(ipaddress.ip_network(rule["CidrIp"]))  # type: ignore[arg-type]
                and rule["IpProtocol"] in {"-1", "tcp"}
                and (rule["IpProtocol"] == "-1" or rule["FromPort"] <= 443 <= rule["ToPort"])
                for rule in ingress
            ), f"nothing admits HTTPS from the egress subnet {subnet}"
            assert all(rule.get("CidrIp") != "0.0.0.0/0" for rule in ingress)


def test_nat_instance_root_volume_is_encrypted(synthesized_nat_instance: Synthesized) -> None:
    network = synthesized_nat_instance.stack("Network")
    instances = resources(network, "AWS::EC2::Instance")
    assert instances
    for instance in instances.values():
        (mapping,) = instance["Properties"]["BlockDeviceMappings"]
        assert mapping["Ebs"]["Encrypted"] is True


# --- environment --------------------------------------------------------------------------


def test_function_environment_comes_from_the_settings_class(synthesized: Synthesized) -> None:
    from hflambda.settings import Settings

    known = {f"HFLAMBDA_{name.upper()}" for name in Settings.model_fields}
    for name in HANDLERS:
        _, props = function(synthesized, name)
        variables = props["Environment"]["Variables"]
        ours = {k for k in variables if k.startswith("HFLAMBDA_")}
        assert ours <= known, ours - known
        assert variables["HFLAMBDA_MODEL_STORE"] == "/mnt/models"
        assert variables["HFLAMBDA_REGISTRY"] == "/var/task/models.toml"
        assert variables["HFLAMBDA_PROFILE"] == "aws"
        assert variables["POWERTOOLS_SERVICE_NAME"] == name
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "hflambda"
    _, predict = function(synthesized, "predict")
    variables = predict["Environment"]["Variables"]
    assert {"HFLAMBDA_INDEX_QUEUE_URL", "HFLAMBDA_AUTH_ISSUER", "HFLAMBDA_AUTH_AUDIENCE"} <= set(variables)
    # warmup holds derived memory estimates of generation models to predict's model budget
    _, warmup = function(synthesized, "warmup")
    assert warmup["Environment"]["Variables"]["HFLAMBDA_PREDICT_MEMORY_MB"] == str(predict["MemorySize"])
    assert variables["HFLAMBDA_VECTOR_BACKEND"] == "aws"
    assert "IndexArn" in json.dumps(variables["HFLAMBDA_VECTOR_INDEX"])  # the index's ARN, no fixed name


# --- monitoring ---------------------------------------------------------------------------


def test_alarms_and_dashboard_exist(synthesized: Synthesized) -> None:
    from cdk.monitoring import ALARMS

    monitoring = synthesized.stack("Monitoring")
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in resources(monitoring, "AWS::CloudWatch::Alarm").values()
    }
    assert {name.split("-", 1)[1] for name in alarms} == set(ALARMS)
    failed = next(a for n, a in alarms.items() if n.endswith("warmup-models-failed"))
    assert failed["Namespace"] == "hflambda" and failed["MetricName"] == "ModelsFailed"
    assert failed["Dimensions"] == [{"Name": "service", "Value": "warmup"}]
    dlq = next(a for n, a in alarms.items() if n.endswith("dlq-not-empty"))
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible" and dlq["Threshold"] == 1
    for alarm in alarms.values():
        assert alarm["AlarmActions"], "every alarm notifies the SNS topic"
    assert len(resources(monitoring, "AWS::CloudWatch::Dashboard")) == 1


def test_alarm_topic_policy_lets_cloudwatch_publish_over_tls_only(synthesized: Synthesized) -> None:
    # enforce_ssl writes a topic policy, which replaces SNS's default one: without an explicit
    # allow, CloudWatch's alarm actions are refused and no alarm e-mail is ever sent.
    monitoring = synthesized.stack("Monitoring")
    (topic_id,) = resources(monitoring, "AWS::SNS::Topic")
    statements = [
        s
        for p in resources(monitoring, "AWS::SNS::TopicPolicy").values()
        if {"Ref": topic_id} in p["Properties"]["Topics"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    allows = [
        s
        for s in statements
        if s["Effect"] == "Allow"
        and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and "sns:Publish" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert len(allows) == 1, statements
    assert allows[0]["Resource"] == {"Ref": topic_id}
    assert allows[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert any(
        s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in statements
    )


# --- checks -------------------------------------------------------------------------------


def test_cdk_nag_reports_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    from cdk.check import nag_findings

    findings = nag_findings(synthesized.outdir)
    assert not findings, "\n".join(findings)
    assert not synthesized.error, synthesized.error


def test_every_acknowledgement_has_a_reason(synthesized: Synthesized) -> None:
    from cdk.check import acknowledgements
    from cdk.nag import MIN_REASON

    acks = acknowledgements(synthesized.outdir)
    ours = [a for a in acks if a["id"].startswith("AwsSolutions-")]
    assert ours, "acknowledgements are written into template metadata"
    for ack in ours:
        assert re.match(r"AwsSolutions-[A-Z]+\d+", ack["id"]), ack
        assert len(ack["reason"]) >= MIN_REASON, ack
    for ack in acks:  # CDK's own (CloudFormation-Validate::...) carry reasons too
        assert ack["reason"].strip(), ack


def test_cfn_lint_reports_no_error(synthesized: Synthesized) -> None:
    from cdk.check import lint

    errors, _warnings = lint(synthesized.outdir)
    assert not errors, "\n".join(errors)


def test_each_image_asset_holds_only_its_function(synthesized: Synthesized) -> None:
    assets = [p for p in synthesized.outdir.glob("asset.*") if (p / "functions").is_dir()]
    assert len(assets) == 3
    seen = set()
    for asset in assets:
        present = {p.name for p in (asset / "functions").iterdir() if p.is_dir()}
        assert len(present) == 1, present
        (name,) = present
        seen.add(name)
        assert (asset / "functions" / "Dockerfile").is_file()  # one Dockerfile, FUNCTION build arg
        assert (asset / "layers" / "hflambda" / "settings.py").is_file()
        assert (asset / "models.toml").is_file()
        assert {p.name for p in (asset / "requirements").iterdir()} == {
            "warmup.txt" if name == "warmup" else "serve.txt"
        }
        assert not (asset / "tests").exists() and not (asset / ".venv").exists()
    assert seen == set(HANDLERS)

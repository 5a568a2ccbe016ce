"""Service: the three functions composed with the network and storage, and every grant.

Read this file to know who may touch what:

| function | model store (EFS) | vector index + catalogue | index queue | HF token secret | internet |
|----------|-------------------|--------------------------|-------------|-----------------|----------|
| predict  | ClientMount (read-only) | query / read items | send | no | no |
| index    | ClientMount (read-only) | put, delete / conditional updates | consume (event source) | no | no |
| warmup   | ClientMount + ClientWrite | delete garbage / scan (scheduled maintenance) | no | read | Hub via NAT (unless nat_mode=none) |
"""

from __future__ import annotations

from aws_cdk import Annotations, Aws, CfnOutput, Duration, Stack, triggers
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from cdk import nag
from cdk.config import DeployConfig
from cdk.model_function import IMAGE_REGISTRY_PATH, FunctionSizing, ModelFunction, StoreMount
from cdk.predict_api import PredictApi
from cdk.storage import MODEL_STORE_MOUNT, StorageStack
from hflambda.settings import env_name

METRICS_NAMESPACE = "hflambda"


def settings_env(**values: str) -> dict[str, str]:
    """``HFLAMBDA_*`` variables named from the settings class, so a renamed field breaks synth."""
    return {env_name(field): value for field, value in values.items()}


def powertools_env(service: str, *, tracing: bool) -> dict[str, str]:
    """Powertools' own variables; tracing off also keeps the X-Ray SDK out of the cold start."""
    return {
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
    }


class VectorsAccess:
    """Least-privilege access to the vector index (S3 Vectors) and the catalogue (DynamoDB).

    predict searches (QueryVectors; GetVectors too, which S3 Vectors requires for a query
    with a filter or returned metadata) and reads catalogue items; index writes and deletes
    vectors and updates items (conditional writes) and failure records; warmup's scheduled
    maintenance scans the catalogue and deletes garbage vectors. Each on the one index and
    the one table.
    """

    def __init__(self, storage: StorageStack) -> None:
        self.index_arn = storage.vector_index_arn
        self.table = storage.catalogue

    def _grant(self, function: lambda_.IFunction, vectors: list[str], items: list[str]) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(actions=[f"s3vectors:{a}" for a in vectors], resources=[self.index_arn])
        )
        self.table.grant(function, *(f"dynamodb:{a}" for a in items))

    def allow_search(self, function: lambda_.IFunction) -> None:
        self._grant(function, ["QueryVectors", "GetVectors"], ["GetItem", "BatchGetItem"])

    def allow_index(self, function: lambda_.IFunction) -> None:
        self._grant(
            function,
            ["PutVectors", "GetVectors", "DeleteVectors"],
            ["GetItem", "BatchGetItem", "UpdateItem", "BatchWriteItem", "Query"],
        )

    def allow_maintenance(self, function: lambda_.IFunction) -> None:
        self._grant(function, ["DeleteVectors"], ["Scan", "GetItem", "BatchGetItem", "UpdateItem"])

    def environment(self) -> dict[str, str]:
        """The settings that select the aws vector backend and name its index and table."""
        return settings_env(
            vector_backend="aws", vector_index=self.index_arn, vector_table=self.table.table_name
        )


class ServiceStack(Stack):
    """predict + HTTP API, index + SQS event source, warmup + schedule + after-deploy run."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        vpc: ec2.IVpc,
        serving_subnets: ec2.SubnetSelection,
        warmup_subnets: ec2.SubnetSelection,
        storage: StorageStack,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        vectors = VectorsAccess(storage)
        common = (
            settings_env(model_store=MODEL_STORE_MOUNT, registry=IMAGE_REGISTRY_PATH, profile="aws")
            | vectors.environment()
        )
        store = StoreMount(vpc=vpc, file_system=storage.file_system, access_point=storage.access_point)

        # --- predict ------------------------------------------------------------------------
        auth = settings_env(
            auth_issuer=config.auth_issuer,
            # The app checks one audience; API Gateway already enforced the list.
            auth_audience=config.auth_audience[0],
        )
        if config.auth_authorized_parties:
            auth |= settings_env(auth_authorized_parties=",".join(config.auth_authorized_parties))
        self.predict_parts = ModelFunction(
            self,
            "Predict",
            name="predict",
            description="hflambda predict API (FastAPI + Mangum); reads models from EFS read-only",
            config=config,
            sizing=FunctionSizing(
                memory_mb=config.predict_memory_mb, timeout=Duration.seconds(config.predict_timeout_s)
            ),
            environment=common
            | auth
            | settings_env(
                index_queue_url=storage.index_queue.queue_url,
                predict_memory_mb=str(config.predict_memory_mb),
                # a chat completion's fallback chain must finish before the function times out
                chat_budget_seconds=str(max(1, config.predict_timeout_s - 2)),
            )
            | powertools_env("predict", tracing=config.tracing),
            subnets=serving_subnets,
            writable_store=False,
            store=store,
        )
        self.predict = self.predict_parts.function
        self.predict_live = lambda_.Alias(
            self,
            "PredictLive",
            alias_name="live",
            version=self.predict.current_version,
            provisioned_concurrent_executions=config.predict_provisioned_concurrency or None,
        )
        self.api = PredictApi(self, "Api", config=config, handler=self.predict_live)

        # --- index --------------------------------------------------------------------------
        self.index_parts = ModelFunction(
            self,
            "Index",
            name="index",
            description="hflambda index: embeds queued documents into the vector store",
            config=config,
            sizing=FunctionSizing(
                memory_mb=config.index_memory_mb, timeout=Duration.seconds(config.index_timeout_s)
            ),
            # batches of documents: parallel one-CPU runs over length buckets (see ort_mode)
            environment=common
            | settings_env(ort_mode="throughput")
            | powertools_env("index", tracing=config.tracing),
            subnets=serving_subnets,
            writable_store=False,
            store=store,
        )
        self.index = self.index_parts.function
        self.index.add_event_source(
            sources.SqsEventSource(
                storage.index_queue,
                batch_size=config.index_batch_size,
                max_batching_window=Duration.seconds(config.index_batching_window_s),
                report_batch_item_failures=True,  # one bad message never fails its batch-mates
                max_concurrency=config.index_max_concurrency,
            )
        )

        # --- warmup -------------------------------------------------------------------------
        token_secret = config.hf_token_secret_name or storage.hf_token.secret_arn
        # warmup also runs the scheduled vector-store maintenance (compaction, ANN index)
        warmup_env = (
            common
            | settings_env(hf_token_secret=token_secret)
            # warmup holds derived model memory estimates to the predict function's budget
            | settings_env(predict_memory_mb=str(config.predict_memory_mb))
            | powertools_env("warmup", tracing=config.tracing)
        )
        if config.hf_endpoint:
            warmup_env |= settings_env(hf_endpoint=config.hf_endpoint)
        warmup_env["HF_HOME"] = "/tmp/huggingface"  # the only writable place besides the store
        self.warmup_parts = ModelFunction(
            self,
            "Warmup",
            name="warmup",
            description="hflambda warmup: pinned Hub revisions -> ONNX -> model store (sole writer)",
            config=config,
            sizing=FunctionSizing(
                memory_mb=config.warmup_memory_mb,
                timeout=Duration.seconds(DeployConfig.WARMUP_TIMEOUT_S),
                ephemeral_mb=config.warmup_ephemeral_mb,
                # opt-in: a new account's concurrency (10) is all unreserved floor; the store's
                # per-model locks already keep concurrent runs from writing the same model
                reserved_concurrency=config.warmup_reserved_concurrency or None,
            ),
            environment=warmup_env,
            subnets=warmup_subnets,
            writable_store=True,
            store=store,
        )
        self.warmup = self.warmup_parts.function
        Annotations.of(self.warmup).acknowledge_warning(
            "@aws-cdk/aws-lambda:addPermissionsToVersionOrAlias",
            "The schedule invokes the unqualified function and the trigger's role may invoke "
            "every qualifier (function ARN + ':*'); no caller relies on a version-only permission.",
        )
        for warning in config.quota_warnings():
            Annotations.of(self.warmup).add_warning_v2("hflambda:lambda-quota", warning)
        # A crashed run is not retried by Lambda: the schedule runs it again, and a retry would
        # only redo the same work. Asynchronous retry settings are per qualifier: $LATEST for
        # the schedule (unqualified invokes), the published version for the after-deploy trigger.
        self.warmup.configure_async_invoke(retry_attempts=0, max_event_age=Duration.hours(1))
        after_deploy_no_retry = lambda_.EventInvokeConfig(
            self,
            "WarmupAfterDeployNoRetry",
            function=self.warmup,
            qualifier=self.warmup.current_version.version,
            retry_attempts=0,
            max_event_age=Duration.hours(1),
        )
        events.Rule(
            self,
            "WarmupSchedule",
            description="Re-run hflambda warmup (no-op when every pinned model is current)",
            schedule=events.Schedule.expression(config.warmup_schedule),
            targets=[targets.LambdaFunction(self.warmup, retry_attempts=2, max_event_age=Duration.hours(1))],
        )
        # Once after each deploy that changes warmup (image, registry or settings). Asynchronous:
        # a first warmup can take minutes, and its outcome is reported by metric and alarm.
        after_deploy = triggers.Trigger(
            self,
            "WarmupAfterDeploy",
            handler=self.warmup,  # invokes self.warmup.current_version
            invocation_type=triggers.InvocationType.EVENT,
            execute_on_handler_change=True,
        )
        after_deploy.execute_after(after_deploy_no_retry)

        # --- grants: the whole access matrix (see the module docstring) ----------------------
        storage.index_queue.grant_send_messages(self.predict)
        vectors.allow_search(self.predict)
        vectors.allow_index(self.index)
        vectors.allow_maintenance(self.warmup)  # scheduled maintenance (garbage vector sets)
        storage.hf_token.grant_read(self.warmup)
        if config.model_mirror_bucket:
            mirror_arn = f"arn:{Aws.PARTITION}:s3:::{config.model_mirror_bucket}"
            self.warmup.add_to_role_policy(
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[mirror_arn])
            )
            self.warmup.add_to_role_policy(
                iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{mirror_arn}/*"])
            )
            nag.acknowledge(
                self.warmup.role or self.warmup,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{config.model_mirror_bucket}/*]",
                "Warmup reads model snapshots from the operator's mirror bucket (model_mirror_bucket): "
                "read-only, objects of that one bucket.",
            )

        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "PredictFunctionName", value=self.predict.function_name)
        CfnOutput(self, "IndexFunctionName", value=self.index.function_name)
        CfnOutput(self, "WarmupFunctionName", value=self.warmup.function_name)
        CfnOutput(self, "PredictLogGroup", value=self.predict_parts.log_group.log_group_name)
        CfnOutput(self, "IndexLogGroup", value=self.index_parts.log_group.log_group_name)
        CfnOutput(self, "WarmupLogGroup", value=self.warmup_parts.log_group.log_group_name)
        CfnOutput(self, "ApiAccessLogGroup", value=self.api.access_logs.log_group_name)

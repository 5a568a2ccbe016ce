"""Monitoring: the alarms docs/runbook.md explains, an SNS topic for them, one dashboard.

Alarm names are stable (``<prefix>-<what>``) so the runbook can name them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk import nag
from cdk.config import DeployConfig
from cdk.service import METRICS_NAMESPACE

# The runbook has one section per alarm id below.
ALARMS = (
    "dlq-not-empty",
    "index-backlog",
    "warmup-models-failed",
    "warmup-errors",
    "predict-5xx",
    "predict-throttles",
    "index-throttles",
)


@dataclass(frozen=True, kw_only=True)
class Watched:
    """What the monitoring stack looks at (built by the service and storage stacks)."""

    http_api: apigw.IHttpApi
    predict: lambda_.IFunction
    index: lambda_.IFunction
    warmup: lambda_.IFunction
    index_queue: sqs.IQueue
    dead_letters: sqs.IQueue


def warmup_metric(name: str, statistic: str = "Sum", period: Duration | None = None) -> cloudwatch.Metric:
    """A metric the warmup handler emits with Powertools EMF (dimension ``service=warmup``)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": "warmup"},
        statistic=statistic,
        period=period or Duration.hours(1),
    )


class MonitoringStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeployConfig, watched: Watched, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.topic = sns.Topic(self, "Alarms", display_name="hflambda alarms", enforce_ssl=True)
        # enforce_ssl writes a topic policy, and a topic policy replaces SNS's default one (which
        # let the account's services publish): CloudWatch alarm actions need this explicit allow.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        nag.acknowledge(
            self.topic,
            "AwsSolutions-SNS2",
            "Alarm notifications carry alarm names and states only. CloudWatch cannot publish to "
            "a topic encrypted with the AWS-managed SNS key, and a customer key adds cost for no data.",
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        notify = actions.SnsAction(self.topic)
        prefix = config.stack_prefix.lower()
        five_min = Duration.minutes(5)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def alarm(
            key: str, metric: cloudwatch.IMetric, threshold: float, description: str, periods: int = 1
        ) -> None:
            created = cloudwatch.Alarm(
                self,
                key,
                alarm_name=f"{prefix}-{key}",
                alarm_description=f"{description} Runbook: docs/runbook.md#{key}",
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(notify)
            created.add_ok_action(notify)
            self.alarms[key] = created

        alarm(
            "dlq-not-empty",
            watched.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            1,
            "Index messages failed every retry and were parked in the dead-letter queue.",
        )
        alarm(
            "index-backlog",
            watched.index_queue.metric_approximate_age_of_oldest_message(
                period=five_min, statistic="Maximum"
            ),
            900,
            "The oldest queued index message has waited 15 minutes or more.",
            periods=2,
        )
        alarm(
            "warmup-models-failed",
            warmup_metric("ModelsFailed"),
            1,
            "Warmup could not publish at least one model; serving keeps the last good revision.",
        )
        alarm(
            "warmup-errors",
            watched.warmup.metric_errors(period=Duration.hours(1), statistic="Sum"),
            1,
            "The warmup function itself crashed or timed out.",
        )
        alarm(
            "predict-5xx",
            watched.http_api.metric_server_error(period=five_min, statistic="Sum"),
            config.predict_5xx_threshold,
            f"The predict API returned {config.predict_5xx_threshold}+ 5xx responses in 5 minutes.",
        )
        alarm(
            "predict-throttles",
            watched.predict.metric_throttles(period=five_min, statistic="Sum"),
            1,
            "Lambda throttled predict invocations (account or function concurrency exhausted).",
        )
        alarm(
            "index-throttles",
            watched.index.metric_throttles(period=five_min, statistic="Sum"),
            1,
            "Lambda throttled index invocations.",
        )

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{prefix}-overview")
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=24, height=3
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[
                    watched.http_api.metric_count(period=five_min),
                    watched.http_api.metric_client_error(period=five_min),
                    watched.http_api.metric_server_error(period=five_min),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="API latency (p50, p99)",
                left=[
                    watched.http_api.metric_latency(period=five_min, statistic="p50"),
                    watched.http_api.metric_latency(period=five_min, statistic="p99"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="predict: duration p99, concurrency, throttles",
                left=[watched.predict.metric_duration(period=five_min, statistic="p99")],
                right=[
                    watched.predict.metric("ConcurrentExecutions", period=five_min, statistic="Maximum"),
                    watched.predict.metric_throttles(period=five_min),
                ],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Index queue: depth, oldest message age",
                left=[watched.index_queue.metric_approximate_number_of_messages_visible(period=five_min)],
                right=[watched.index_queue.metric_approximate_age_of_oldest_message(period=five_min)],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="index: invocations, errors, throttles; DLQ depth",
                left=[
                    watched.index.metric_invocations(period=five_min),
                    watched.index.metric_errors(period=five_min),
                    watched.index.metric_throttles(period=five_min),
                ],
                right=[watched.dead_letters.metric_approximate_number_of_messages_visible(period=five_min)],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="warmup: models per run",
                left=[
                    warmup_metric(name)
                    for name in ("ModelsWarmed", "ModelsSkipped", "ModelsFailed", "ModelsDeferred")
                ],
                right=[watched.warmup.metric_duration(period=Duration.hours(1), statistic="Maximum")],
                width=8,
            ),
        )

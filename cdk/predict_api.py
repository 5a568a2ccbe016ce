"""The public front door: an HTTP API whose every route but ``GET /health`` needs a Clerk JWT."""

from __future__ import annotations

import json

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk import nag
from cdk.config import DeployConfig, log_retention

# One JSON line per request, with what the runbook's Logs Insights queries read.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "sub": "$context.authorizer.claims.sub",
}


# The methods of the authorized catch-all route: everything the API serves, never OPTIONS.
AUTHORIZED_METHODS = (
    apigw.HttpMethod.GET,
    apigw.HttpMethod.HEAD,
    apigw.HttpMethod.POST,
    apigw.HttpMethod.PUT,
    apigw.HttpMethod.PATCH,
    apigw.HttpMethod.DELETE,
)


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogs:
    """``HttpStage`` takes access-log settings as an interface; this is the plain holder."""

    def __init__(self, destination: apigw.IAccessLogDestination, format: apigw_v1.AccessLogFormat) -> None:
        self._destination = destination
        self._format = format

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return self._format


class PredictApi(Construct):
    """HTTP API -> predict (payload format 2.0), JWT authorizer, stage throttling, access logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        handler: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.authorizer = authorizers.HttpJwtAuthorizer(
            "Clerk",
            jwt_issuer=config.auth_issuer,
            jwt_audience=list(config.auth_audience),
            authorizer_name="clerk-jwt",
        )
        cors = None
        if config.cors_allow_origins:
            # API Gateway answers a preflight from this configuration only when no route matches
            # OPTIONS; the authorized routes below therefore name their methods (no ANY).
            cors = apigw.CorsPreflightOptions(
                allow_origins=list(config.cors_allow_origins),
                allow_methods=[apigw.CorsHttpMethod.ANY],
                allow_headers=["authorization", "content-type"],
                max_age=Duration.hours(1),
            )
        self.http_api = apigw.HttpApi(
            self,
            "Api",
            description="hflambda predict API",
            create_default_stage=False,
            default_authorizer=self.authorizer,  # any route added later is protected too
            cors_preflight=cors,
        )
        integration = integrations.HttpLambdaIntegration(
            "Predict", handler, payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0
        )
        (health,) = self.http_api.add_routes(
            path="/health",
            methods=[apigw.HttpMethod.GET],
            integration=integration,
            authorizer=apigw.HttpNoneAuthorizer(),
        )
        # Every method but OPTIONS: `ANY /{proxy+}` would also match a browser's preflight, which
        # carries no Authorization header, and send it to the authorizer (401). Without an OPTIONS
        # route, API Gateway answers preflights from the CORS configuration (404 without one).
        self.http_api.add_routes(
            path="/{proxy+}",
            methods=list(AUTHORIZED_METHODS),
            integration=integration,
            authorizer=self.authorizer,
        )
        nag.acknowledge(
            health,
            "AwsSolutions-APIG4",
            "GET /health is the unauthenticated liveness probe by design (docs/architecture.md); it "
            "returns model readiness only, no user data. Every other route has the JWT authorizer.",
        )

        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.api_throttle_rate, burst_limit=config.api_throttle_burst
            ),
            access_log_settings=_AccessLogs(
                apigw.LogGroupLogDestination(self.access_logs),
                apigw_v1.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
            ),
        )

    @property
    def url(self) -> str:
        return self.stage.url

"""One hflambda function: a container image built from the repo root, in the VPC, on the store.

Every function builds ``functions/Dockerfile`` with the build arguments ``make images`` uses
(:func:`containers.images.build_args`), from the host-side wheelhouse ``make wheelhouse`` fills
(``build/wheelhouse/<arch>/<set>/``), with no network during the build. The image asset
includes only what that function's build copies (an allow-list), so a change to another
function's code does not rebuild or redeploy this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk import nag
from cdk.config import REPO_ROOT, DeployConfig, log_retention
from cdk.storage import MODEL_STORE_MOUNT
from containers import wheelhouse
from containers.images import DEV_ONLY, DOCKERFILE, REQUIREMENTS, build_args

IMAGE_REGISTRY_PATH = "/var/task/models.toml"  # where the Dockerfile puts the registry
__all__ = ["IMAGE_REGISTRY_PATH", "REQUIREMENTS", "FunctionSizing", "ModelFunction", "StoreMount"]


def wheel_arch(architecture: str) -> str:
    return "aarch64" if architecture == "arm64" else "x86_64"


def image_asset_files(function: str, registry: str, architecture: str = "x86_64") -> list[str]:
    """Docker-ignore style allow-list of the repo files ``function``'s image needs."""
    requirement_set = REQUIREMENTS[function]
    return [
        "*",
        f"!{DOCKERFILE}",
        f"!requirements/{requirement_set}.txt",
        f"!{wheelhouse.relative_folder(requirement_set, wheel_arch(architecture))}",
        f"!{registry}",
        "!layers/hflambda",
        "!functions/__init__.py",
        f"!functions/{function}",
        *(f"layers/hflambda/{path}" for path in DEV_ONLY),  # the Dockerfile drops them too
        "**/__pycache__",
        "**/*.pyc",
    ]


@dataclass(frozen=True, kw_only=True)
class StoreMount:
    """Where the model store is and how a function reaches it."""

    vpc: ec2.IVpc
    file_system: efs.FileSystem
    access_point: efs.IAccessPoint


@dataclass(frozen=True, kw_only=True)
class FunctionSizing:
    memory_mb: int
    timeout: Duration
    ephemeral_mb: int = 512
    reserved_concurrency: int | None = None


class ModelFunction(Construct):
    """A ``DockerImageFunction`` for ``functions/<name>`` with its log group and store mount."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        config: DeployConfig,
        sizing: FunctionSizing,
        environment: dict[str, str],
        store: StoreMount,
        subnets: ec2.SubnetSelection,
        writable_store: bool,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        arm = config.architecture == "arm64"
        # The build installs from the wheelhouse only, so it runs with no network at all (and
        # no machine's CA can reach the image). Lambda needs a single-platform Docker v2 / OCI
        # manifest: run `cdk deploy` with BUILDX_NO_DEFAULT_ATTESTATIONS=1 (docs/deploy.md), or
        # buildx wraps the image and its provenance attestation in an index Lambda rejects.
        code = lambda_.DockerImageCode.from_image_asset(
            str(REPO_ROOT),
            file=DOCKERFILE,
            exclude=image_asset_files(name, config.registry_in_repo, config.architecture),
            ignore_mode=IgnoreMode.DOCKER,  # allow-list semantics: '*' then '!keep'
            build_args=build_args(
                name, arch=wheel_arch(config.architecture), registry=config.registry_in_repo
            ),
            network_mode=ecr_assets.NetworkMode.NONE,
            platform=ecr_assets.Platform.LINUX_ARM64 if arm else ecr_assets.Platform.LINUX_AMD64,
            cmd=[f"functions.{name}.handler.handler"],
        )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Read-only unless told otherwise. FileSystem.from_efs_access_point would also grant
        # ClientWrite, so the mount is declared with exactly the IAM actions this function needs.
        actions = ["elasticfilesystem:ClientMount"]
        if writable_store:
            actions.append("elasticfilesystem:ClientWrite")
        file_system, access_point = store.file_system, store.access_point
        mount = lambda_.FileSystem(
            arn=access_point.access_point_arn,
            local_mount_path=MODEL_STORE_MOUNT,
            connections=file_system.connections,
            dependency=[file_system.mount_targets_available],
            policies=[
                iam.PolicyStatement(
                    actions=actions,
                    resources=[file_system.file_system_arn],
                    conditions={
                        "StringEquals": {"elasticfilesystem:AccessPointArn": access_point.access_point_arn}
                    },
                )
            ],
        )
        # Egress: HTTPS (AWS APIs through the endpoints; the Hub for warmup) and NFS to the store,
        # which the mount adds. Serving subnets have no route out, so 443 reaches AWS only.
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=store.vpc, allow_all_outbound=False,
            description=f"hflambda {name}: HTTPS out, NFS to the model store",
        )  # fmt: skip
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        self.function: lambda_.DockerImageFunction = lambda_.DockerImageFunction(
            self,
            "Function",
            description=description,
            code=code,
            architecture=lambda_.Architecture.ARM_64 if arm else lambda_.Architecture.X86_64,
            memory_size=sizing.memory_mb,
            timeout=sizing.timeout,
            ephemeral_storage_size=Size.mebibytes(sizing.ephemeral_mb),
            reserved_concurrent_executions=sizing.reserved_concurrency,
            environment=environment,
            vpc=store.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            filesystem=mount,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE if config.tracing else lambda_.Tracing.DISABLED,
            recursive_loop=lambda_.RecursiveLoop.TERMINATE,
        )
        role = self.function.role
        assert role is not None
        nag.acknowledge_many(
            role,
            [
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole]",
            ],
            "AWS-maintained minimal Lambda policies: writing to the function's own log group and "
            "managing the ENIs a VPC function needs. Writing them by hand would only drift.",
        )
        if config.tracing:
            nag.acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
                "resource-level permissions, so X-Ray requires Resource '*'.",
            )

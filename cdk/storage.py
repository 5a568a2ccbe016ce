"""Storage: the model store (EFS), the vector index + catalogue, the index queue and the HF token secret.

Nothing here grants a function anything: ``cdk.service`` composes functions with these
resources and makes every grant in one place. The EFS file-system policy is the exception
that makes those grants mean something: without a file-system policy EFS lets any client
that reaches a mount target read *and write*, whatever its IAM role says.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, SecretValue, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3vectors as s3vectors
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk import nag
from cdk.config import DeployConfig
from hflambda.vectors.aws import NON_FILTERABLE_KEYS

MODEL_STORE_MOUNT = "/mnt/models"  # Lambda requires mounts under /mnt
STORE_UID = "1001"  # the fixed POSIX identity every function uses on the access point
STORE_GID = "1001"
TOKEN_PLACEHOLDER = "unset"  # not an HF token shape: warmup fails loudly, naming the secret


class StorageStack(Stack):
    """State that outlives a deploy, plus the queue between predict and index."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]

        # --- model store ----------------------------------------------------------------
        self.file_system = efs.FileSystem(
            self,
            "ModelStore",
            vpc=vpc,
            vpc_subnets=subnets,
            encrypted=True,
            throughput_mode=efs.ThroughputMode.ELASTIC,  # bursting leaves a small store ~no baseline
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            # Every model in the store is rebuilt by warmup from pinned revisions.
            removal_policy=RemovalPolicy.DESTROY,
            # CDK's "deny anonymous" default adds an AnyPrincipal ClientWrite grant, which would
            # make the serving functions' read-only mounts writable. The policy below replaces it.
            allow_anonymous_access=True,
        )
        self.access_point = self.file_system.add_access_point(
            "Models",
            path="/models",
            create_acl=efs.Acl(owner_uid=STORE_UID, owner_gid=STORE_GID, permissions="755"),
            posix_user=efs.PosixUser(uid=STORE_UID, gid=STORE_GID),
        )
        # With a file-system policy in place EFS authorizes every NFS client with IAM. This one
        # delegates to the account's identity policies: a role may mount iff its own policy
        # allows ClientMount, and write iff it allows ClientWrite (cdk.service: warmup alone).
        # Anonymous (non-IAM) clients get nothing. The identity policies also pin the access
        # point; this policy cannot name it (the access point depends on the file system).
        self.file_system.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DelegateToIdentityPolicies",
                principals=[iam.AccountRootPrincipal()],
                actions=["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
            )
        )

        # --- vectors: S3 Vectors index (chunk vectors) + DynamoDB catalogue -------------------
        # No physical names: both are retained (users' documents), so a fixed name would make
        # the next deploy after `cdk destroy` fail on its namesake. The functions get the
        # index ARN and the table name. See hflambda.vectors.aws for the data layout.
        self.vector_bucket = s3vectors.CfnVectorBucket(
            self, "VectorBucket", encryption_configuration={"sseType": "AES256"}
        )
        self.vector_bucket.apply_removal_policy(RemovalPolicy.RETAIN)
        self.vector_index = s3vectors.CfnIndex(
            self,
            "VectorIndex",
            vector_bucket_arn=self.vector_bucket.attr_vector_bucket_arn,
            data_type="float32",
            dimension=config.vector_dimensions,
            distance_metric="cosine",
            # chunk text, offsets, document id and version are returned, never filtered on
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=list(NON_FILTERABLE_KEYS)
            ),
        )
        self.vector_index.apply_removal_policy(RemovalPolicy.RETAIN)
        self.catalogue = dynamodb.Table(
            self,
            "Catalogue",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute="expires_at",  # failure records expire after 14 days
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vector_index_arn = self.vector_index.attr_index_arn

        # --- index queue ----------------------------------------------------------------
        self.dead_letters = sqs.Queue(
            self,
            "IndexDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),  # the longest SQS allows: time to look and redrive
        )
        self.index_queue = sqs.Queue(
            self,
            "IndexQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(config.queue_visibility_s),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=config.index_max_receive_count
            ),
        )

        # --- HF token secret ------------------------------------------------------------
        if config.hf_token_secret_name:
            self.hf_token: secretsmanager.ISecret = secretsmanager.Secret.from_secret_name_v2(
                self, "HfToken", config.hf_token_secret_name
            )
        else:
            secret = secretsmanager.Secret(
                self,
                "HfToken",
                description=(
                    "Hugging Face access token for hflambda warmup (read-only token from "
                    "huggingface.co/settings/tokens). Created holding the placeholder 'unset'; "
                    "set it with: aws secretsmanager put-secret-value --secret-id <this secret> "
                    "--secret-string hf_xxx"
                ),
                # CloudFormation cannot create an empty secret. A placeholder that is not an HF
                # token makes warmup fail with a message naming this secret until it is set.
                secret_string_value=SecretValue.unsafe_plain_text(TOKEN_PLACEHOLDER),
                removal_policy=RemovalPolicy.DESTROY,
            )
            nag.acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "The secret holds a Hugging Face token issued by huggingface.co; Secrets Manager "
                "cannot rotate it. Rotate it on the Hub and put the new value (docs/runbook.md).",
            )
            self.hf_token = secret

        CfnOutput(self, "ModelStoreId", value=self.file_system.file_system_id)
        CfnOutput(self, "VectorIndexArn", value=self.vector_index.attr_index_arn)
        CfnOutput(self, "CatalogueTable", value=self.catalogue.table_name)
        CfnOutput(self, "IndexQueueUrl", value=self.index_queue.queue_url)
        CfnOutput(self, "IndexDeadLetterQueueUrl", value=self.dead_letters.queue_url)
        CfnOutput(self, "HfTokenSecret", value=config.hf_token_secret_name or self.hf_token.secret_arn)

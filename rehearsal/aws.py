"""The AWS side of the rehearsal: one moto server on loopback, and the resources the templates
declare, created in it from their own (resolved) properties.

Providers (see :mod:`rehearsal.template`) for:

- ``AWS::SQS::Queue``: name, ``VisibilityTimeout``, ``MessageRetentionPeriod``,
  ``DelaySeconds``, ``ReceiveMessageWaitTimeSeconds``, ``MaximumMessageSize`` and the
  ``RedrivePolicy`` (dead-letter target, ``maxReceiveCount``: moto moves a message to the DLQ
  on the receive after the last allowed one, as SQS does); ``Ref`` = queue URL.
- ``AWS::SecretsManager::Secret``: the template's ``SecretString`` (for hflambda: the
  placeholder), or a generated one; ``Ref`` = secret ARN.
- ``AWS::S3::Bucket`` (name or generated name), ``AWS::DynamoDB::Table`` (key schema,
  attributes, indexes), ``AWS::S3Vectors::VectorBucket`` / ``AWS::S3Vectors::Index``.
- ``AWS::EFS::AccessPoint``: a directory of the local store with the access point's
  ``CreationInfo`` owner and permissions (what EFS does on first mount).

Encryption settings, bucket policies, lifecycle rules and access logging are not reproduced
(moto accepts but does not enforce most of them): docs/deploy.md lists them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from rehearsal.template import ACCOUNT, PARTITION, REGION, Physical, Provider, Resolver, Stack

__all__ = ["Moto", "aws_providers", "client"]

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Moto:
    """A ThreadedMotoServer on 127.0.0.1 (a free port); ``url`` is what AWS_ENDPOINT_URL gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from hflambda.devstack import free_port

        self.host = host
        self.port = port or free_port(host)
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Moto:
        """moto with S3 Vectors' QueryVectors (the project's fake, ``hflambda.s3vectors_fake``)."""
        try:
            from hflambda.s3vectors_fake import start_server
        except ImportError:  # before the fake exists: plain moto (S3 Vectors without queries)
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self.server.start()
            return self
        self.server, _url = start_server(self.host, self.port)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self, service: str) -> Any:
        return client(service, self.url)


def client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


def aws_providers(moto: Moto, store_root: Path) -> dict[str, Provider]:
    """Providers creating each declared resource in ``moto`` (and access points under ``store_root``).

    Names the template leaves to CloudFormation get a random suffix, as CloudFormation gives
    them (so two rehearsals in one process, which share moto's state, never collide).
    """
    providers = _MotoProviders(moto, store_root)
    return {
        "AWS::SQS::Queue": providers.queue,
        "AWS::SecretsManager::Secret": providers.secret,
        "AWS::S3::Bucket": providers.bucket,
        "AWS::DynamoDB::Table": providers.table,
        "AWS::S3Vectors::VectorBucket": providers.vector_bucket,
        "AWS::S3Vectors::Index": providers.vector_index,
        "AWS::EFS::AccessPoint": providers.access_point,
    }


class _MotoProviders:
    """One provider per resource type (bound methods), sharing the moto server and the name suffix."""

    def __init__(self, moto: Moto, store_root: Path) -> None:
        self.moto = moto
        self.store_root = store_root
        self.suffix = secrets.token_hex(4).upper()

    def _name(self, stack: Stack, logical: str, limit: int) -> str:
        return f"{stack.name}-{logical}"[: limit - 9] + f"-{self.suffix}"

    def queue(self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
        sqs = self.moto.client("sqs")
        name = str(
            props.get("QueueName") or self._name(stack, logical, 80 - (5 if props.get("FifoQueue") else 0))
        )
        if props.get("FifoQueue") and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ):
            if key in props:
                attributes[key] = str(props[key])
        if props.get("FifoQueue"):
            attributes["FifoQueue"] = "true"
        if props.get("RedrivePolicy"):
            policy = dict(props["RedrivePolicy"])
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": policy["deadLetterTargetArn"],
                    "maxReceiveCount": str(policy["maxReceiveCount"]),
                }
            )
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Physical(str(url), {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def secret(self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
        value = props.get("SecretString")
        if value is None:
            generate = props.get("GenerateSecretString") or {}
            generated = secrets.token_urlsafe(int(generate.get("PasswordLength", 32)))
            template = generate.get("SecretStringTemplate")
            value = (
                json.dumps({**json.loads(template), generate["GenerateStringKey"]: generated})
                if template and generate.get("GenerateStringKey")
                else generated
            )
        name = str(props.get("Name") or self._name(stack, logical, 256))
        arn = self.moto.client("secretsmanager").create_secret(Name=name, SecretString=str(value))["ARN"]
        return Physical(str(arn), {"Id": arn})

    def bucket(self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
        name = str(props.get("BucketName") or self._name(stack, logical, 63).lower())
        s3 = self.moto.client("s3")
        try:
            s3.create_bucket(Bucket=name)
        except s3.exceptions.ClientError as exc:  # a fixed name another rehearsal in this process created
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        return Physical(
            name,
            {
                "Arn": f"arn:{PARTITION}:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            },
        )

    def table(self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
        name = str(props.get("TableName") or self._name(stack, logical, 255))
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if request["BillingMode"] == "PROVISIONED":
            request["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
            if props.get(key):
                request[key] = props[key]
        created = self.moto.client("dynamodb").create_table(**request)["TableDescription"]
        if (props.get("TimeToLiveSpecification") or {}).get("Enabled"):
            self.moto.client("dynamodb").update_time_to_live(
                TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"]
            )
        return Physical(name, {"Arn": created["TableArn"], "StreamArn": created.get("LatestStreamArn", "")})

    def vector_bucket(
        self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]
    ) -> Physical:
        name = str(props.get("VectorBucketName") or self._name(stack, logical, 63).lower())
        client = self.moto.client("s3vectors")
        try:
            client.create_vector_bucket(vectorBucketName=name)
        except client.exceptions.ClientError as exc:  # a fixed name another rehearsal in this process created
            if exc.response["Error"]["Code"] != "ConflictException":
                raise
        arn = client.get_vector_bucket(vectorBucketName=name)["vectorBucket"]["vectorBucketArn"]
        return Physical(str(arn), {"VectorBucketArn": arn, "VectorBucketName": name, "CreationTime": ""})

    def vector_index(self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
        client = self.moto.client("s3vectors")
        name = str(props.get("IndexName") or self._name(stack, logical, 63).lower())
        request: dict[str, Any] = {
            "indexName": name,
            "dataType": str(props.get("DataType", "float32")),
            "dimension": int(props["Dimension"]),
            "distanceMetric": str(props.get("DistanceMetric", "cosine")),
        }
        # by name: the bucket ARN's last segment (moto answers CreateIndex by ARN with a 404)
        request["vectorBucketName"] = (
            props.get("VectorBucketName") or str(props["VectorBucketArn"]).rsplit("/", 1)[-1]
        )
        metadata = props.get("MetadataConfiguration") or {}
        if metadata.get("NonFilterableMetadataKeys"):
            request["metadataConfiguration"] = {
                "nonFilterableMetadataKeys": list(metadata["NonFilterableMetadataKeys"])
            }
        client.create_index(**request)
        bucket_name = request["vectorBucketName"]
        arn = f"arn:{PARTITION}:s3vectors:{REGION}:{ACCOUNT}:bucket/{bucket_name}/index/{name}"
        return Physical(arn, {"IndexArn": arn, "IndexName": name})

    def access_point(self, resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
        from rehearsal.template import _placeholder

        physical = _placeholder(stack, logical, "AWS::EFS::AccessPoint")
        root = props.get("RootDirectory") or {}
        creation = root.get("CreationInfo") or {}
        directory = self.store_root / str(root.get("Path", "/")).strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        if creation:
            os.chmod(directory, int(str(creation.get("Permissions", "755")), 8))
            if os.geteuid() == 0:
                os.chown(directory, int(creation["OwnerUid"]), int(creation["OwnerGid"]))
        physical.attrs["LocalPath"] = str(directory)
        return physical


# The resource types the rehearsal creates before anything runs (everything a function may
# reach at run time), in this order.
PROVISIONED_TYPES = (
    "AWS::SQS::Queue",
    "AWS::SecretsManager::Secret",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::S3Vectors::VectorBucket",
    "AWS::S3Vectors::Index",
    "AWS::EFS::AccessPoint",
)

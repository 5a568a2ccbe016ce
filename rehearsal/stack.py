"""The whole rehearsal: ``Rehearsal(config).start()`` brings up what ``cdk.out`` describes.

Order, as a first ``cdk deploy`` creates it: moto with the declared resources (queue + DLQ,
secret with its initial value, buckets, tables, vector buckets/indexes, the access point's
directory in the local store) -> the Hub stand-in and the token issuer -> one pool of
execution environments per image function -> the HTTP API front door and the SQS event
source mapping -> the after-deploy trigger (an asynchronous invoke of the qualifier the
trigger names, with its payload). ``warmup()`` invokes the schedule's target with its
EventBridge event, "on command".

What the rehearsal substitutes (and nothing else; ``stand_ins`` lists them for the report):

- ``AWS_ENDPOINT_URL`` -> the moto server (in AWS: VPC endpoints to the real services);
- ``HF_ENDPOINT`` -> the Hub stand-in (:mod:`rehearsal.hub`);
- the JWT issuer: every value equal to an authorizer's issuer (the authorizer's
  ``JwtConfiguration.Issuer`` and the function variables that repeat it) -> the local
  issuer (or ``--issuer``);
- the EFS access point -> a bind mount of ``<state>/store/<access point path>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rehearsal.aws import CREDENTIALS, PROVISIONED_TYPES, Moto, aws_providers
from rehearsal.esm import EventSourceMapping
from rehearsal.frontdoor import FrontDoor
from rehearsal.functions import AsyncRecord, FunctionPool, Instance, Invocation, invoke_async
from rehearsal.hub import HubStandIn
from rehearsal.rieclient import post_invoke
from rehearsal.template import (
    REGION,
    ApiSpec,
    Assembly,
    FunctionSpec,
    Resolver,
    Route,
    Trigger,
    api_spec,
    async_invoke_configs,
    event_source_specs,
    function_specs,
    warmup_triggers,
)

__all__ = ["Rehearsal", "RehearsalConfig", "function_environment"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RehearsalConfig:
    cdk_out: Path = Path("cdk.out")
    state: Path = Path(".hflambda/rehearsal")
    runtime: str = "containers"  # "process": the development aid (rehearsal.devruntime), no images
    host: str = "127.0.0.1"
    port: int = 0
    issuer: str | None = None  # an external issuer URL; default: a local DevIssuer
    predict_instances: int = 2  # concurrent predict environments (the account's concurrency, locally)
    after_deploy: bool = True  # run the after-deploy trigger at start
    reset: bool = True  # start from an empty store, as a first deploy does
    async_retry_delays: tuple[float, ...] = (60.0, 120.0)  # Lambda's async retry back-off


def function_environment(
    spec: FunctionSpec,
    *,
    moto_url: str,
    hub_url: str | None,
    issuers: dict[str, str],
) -> dict[str, str]:
    """The variables the function's process sees: the template's (issuer substituted), the
    ones Lambda itself sets, and the rehearsal's two endpoints."""
    env = {k: issuers.get(v, v) for k, v in spec.environment.items()}
    env.update(
        {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": "rehearsal",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "rehearsal",
            "AWS_ENDPOINT_URL": moto_url,
        }
    )
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
    return env


# --- execution environments ---------------------------------------------------------------------


@dataclass
class ProcessInstance:
    """Development aid: the handler in a host process behind RIE's invoke path (no image)."""

    spec: FunctionSpec
    env: dict[str, str]
    log: Path
    store_paths: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> ProcessInstance:
        from hflambda.devstack import free_port

        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HFLAMBDA_", "AWS_", "POWERTOOLS_", "HF_"))
        }
        for key, value in self.env.items():
            for mount, host in self.store_paths.items():
                if value == mount or value.startswith(mount + "/"):
                    value = host + value[len(mount) :]
            env[key] = value
        if env.get("HFLAMBDA_REGISTRY", "").startswith("/var/task/"):
            env["HFLAMBDA_REGISTRY"] = str(REPO_ROOT / env["HFLAMBDA_REGISTRY"].removeprefix("/var/task/"))
        env["PYTHONPATH"] = str(REPO_ROOT)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        argv = [sys.executable, "-m", "rehearsal.devruntime", "--handler", self.spec.command[0], "--port", str(port),
                "--timeout", str(self.spec.timeout_s), "--memory", str(self.spec.memory_mb), "--name", self.spec.name]  # fmt: skip
        self.process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        handle.close()
        self.url = f"http://127.0.0.1:{port}"
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.name}: runtime exited ({self.process.returncode}); see {self.log}"
                )
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url, timeout=1)
                return self
            time.sleep(0.2)
        raise TimeoutError(f"{self.spec.name}: runtime did not listen within 120 s; see {self.log}")

    def invoke(self, event: dict[str, Any], *, timeout: float) -> Invocation:
        return post_invoke(self.url, event, timeout=timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


# --- the rehearsal ------------------------------------------------------------------------------


@dataclass
class Rehearsal:
    config: RehearsalConfig
    say: Any = print
    moto: Moto | None = None
    resolver: Resolver | None = None
    hub: HubStandIn | None = None
    issuer: Any = None
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    pools: dict[str, FunctionPool] = field(default_factory=dict)
    api: ApiSpec | None = None
    front_door: FrontDoor | None = None
    mappings: list[EventSourceMapping] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    async_records: list[AsyncRecord] = field(default_factory=list)
    stand_ins: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    _issuers: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- paths ------------------------------------------------------------------------------

    @property
    def state(self) -> Path:
        return self.config.state.resolve()

    @property
    def store_root(self) -> Path:
        return self.state / "store"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        cfg = self.config
        assembly = Assembly(cfg.cdk_out)
        if cfg.runtime == "containers":
            from rehearsal.runner import ensure_asset_images

            self.say(
                "building the function images as the assets describe them (an unchanged one is a cache hit) ..."
            )
            self.images = ensure_asset_images(assembly.assets, say=self.say)
        if cfg.reset and self.store_root.exists():
            shutil.rmtree(self.store_root)
        self.store_root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.moto = Moto(cfg.host).start()
        self.resolver = Resolver(assembly, aws_providers(self.moto, self.store_root))
        self.resolver.provision_all(set(PROVISIONED_TYPES))
        self.functions = function_specs(self.resolver)
        api = api_spec(self.resolver, self.functions)
        self._start_issuer(api)
        self.api = replace(
            api,
            routes=tuple(
                replace(
                    r,
                    authorizer=replace(
                        r.authorizer, issuer=self._issuers.get(r.authorizer.issuer, r.authorizer.issuer)
                    ),
                )
                if r.authorizer
                else r
                for r in api.routes
            ),
        )
        self._start_hub(assembly)
        self.stand_ins = {
            "AWS_ENDPOINT_URL": self.moto.url,
            **({"HF_ENDPOINT": self.hub.url} if self.hub else {}),
            **{f"issuer {k}": v for k, v in self._issuers.items()},
            "model store": str(self.store_root),
        }
        for name, spec in self.functions.items():
            self.environments[name] = function_environment(
                spec,
                moto_url=self.moto.url,
                hub_url=self.hub.url if self.hub else None,
                issuers=self._issuers,
            )
            limit = spec.reserved_concurrency or (
                self.config.predict_instances if name == "predict" else 1000
            )
            self.pools[name] = FunctionPool(spec, self._instance, max_instances=max(1, limit))
        for source in event_source_specs(self.resolver, self.functions):
            pool = self.pools[source.function.function]
            if source.max_concurrency:
                pool.max_instances = min(pool.max_instances, int(source.max_concurrency))
            self.mappings.append(
                EventSourceMapping(
                    source, self._queue_url(source.queue_arn), pool, self.moto.client("sqs")
                ).start()
            )
        self.front_door = FrontDoor(
            self.api,
            self._invoke_route,
            host=cfg.host,
            port=cfg.port,
            access_log=self.logs / "api-access.jsonl",
        ).start()
        self.triggers = warmup_triggers(self.resolver, self.functions)
        self._async_configs = async_invoke_configs(self.resolver, self.functions)
        if cfg.after_deploy:
            for trigger in self.triggers:
                if trigger.kind == "after-deploy":
                    self._fire(trigger)
        info = self.info()
        (self.state / "rehearsal.json").write_text(json.dumps(info, indent=2))
        return info

    def stop(self) -> None:
        for mapping in self.mappings:
            mapping.stop()
        self.mappings = []
        if self.front_door is not None:
            self.front_door.stop()
        for pool in self.pools.values():
            pool.close()
        if self.hub is not None:
            self.hub.stop()
        if self.issuer is not None:
            self.issuer.stop()
        if self.moto is not None:
            self.moto.stop()

    def __enter__(self) -> Rehearsal:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- commands ---------------------------------------------------------------------------

    def warmup(self) -> list[AsyncRecord]:
        """Invoke every schedule target once, with EventBridge's scheduled event ("on command")."""
        return [self._fire(t) for t in self.triggers if t.kind == "schedule"]

    def wait_for(self, records: list[AsyncRecord], timeout: float) -> list[AsyncRecord]:
        deadline = time.monotonic() + timeout
        for record in records:
            if not record.done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(
                    f"{record.source} invocation of {record.function} not done after {timeout:.0f} s"
                )
        return records

    def token(self, sub: str = "rehearsal-user", **claims: Any) -> str:
        """A token from the local issuer for the API's authorizer audience."""
        if self.issuer is None:
            raise RuntimeError("an external issuer is configured: get tokens from it")
        return str(self.issuer.token(sub, **claims))

    def info(self) -> dict[str, Any]:
        assert self.front_door is not None and self.moto is not None
        queues = {
            f"{stack}/{logical}": physical.ref
            for (stack, logical), physical in (self.resolver.physical.items() if self.resolver else [])
            if "QueueUrl" in physical.attrs
        }
        return {
            "api": self.front_door.url,
            "issuer": next(iter(self._issuers.values()), None),
            "audience": self.issuer.audience if self.issuer else None,
            "moto": self.moto.url,
            "hub": self.hub.url if self.hub else None,
            "queues": queues,
            "functions": {
                name: {
                    "name": s.name,
                    "memory_mb": s.memory_mb,
                    "timeout_s": s.timeout_s,
                    "ephemeral_mb": s.ephemeral_mb,
                    "architecture": s.architecture,
                    "command": list(s.command),
                    "mounts": [m.__dict__ for m in s.mounts],
                    "max_instances": self.pools[name].max_instances,
                }
                for name, s in self.functions.items()
            },
            "routes": [r.key for r in (self.api.routes if self.api else ())],
            "cors": self.api.cors.__dict__ if self.api and self.api.cors else None,
            "stand_ins": self.stand_ins,
            "hub_served": self.hub.served if self.hub else {},
            "runtime": self.config.runtime,
            "images": self.images,
            "logs": str(self.logs),
        }

    # --- internals --------------------------------------------------------------------------

    def _start_issuer(self, api: ApiSpec) -> None:
        issuers = {r.authorizer.issuer for r in api.routes if r.authorizer}
        audiences = [a for r in api.routes if r.authorizer for a in r.authorizer.audience]
        if self.config.issuer:
            self._issuers = dict.fromkeys(issuers, self.config.issuer)
            return
        from hflambda.auth.devissuer import DevIssuer

        self.issuer = DevIssuer(self.state / "issuer", audience=audiences[0] if audiences else None)
        url = self.issuer.start(self.config.host, 0)
        self._issuers = dict.fromkeys(issuers, url)

    def _start_hub(self, assembly: Assembly) -> None:
        registries = {
            str(a["source"].get("dockerBuildArgs", {}).get("REGISTRY_FILE", "models.toml"))
            for a in assembly.assets.values()
        }
        if len(registries) != 1:
            raise RuntimeError(f"the images were built with different registries: {sorted(registries)}")
        self.hub = HubStandIn(REPO_ROOT / registries.pop(), self.state / "hub").start()

    def _queue_url(self, arn: str) -> str:
        assert self.resolver is not None
        for physical in self.resolver.physical.values():
            if physical.attrs.get("Arn") == arn and "QueueUrl" in physical.attrs:
                return str(physical.attrs["QueueUrl"])
        raise RuntimeError(f"event source queue {arn} was not created")

    def _instance(self, spec: FunctionSpec, number: int) -> Instance:
        env = self.environments[spec.function]
        log = self.logs / f"{spec.function}-{number}.log"
        if self.config.runtime == "process":
            paths = {m.local_mount_path: str(self.store_root / m.root_path.strip("/")) for m in spec.mounts}
            return ProcessInstance(spec, env, log, paths).start()
        from rehearsal.runner import start_container

        return start_container(
            spec, env, image=self.images[spec.function], store_root=self.store_root, log=log, number=number
        )

    def _invoke_route(self, route: Route, event: dict[str, Any], timeout: float) -> Invocation:
        return self.pools[route.function.function].invoke(event, wait=timeout)

    def _fire(self, trigger: Trigger) -> AsyncRecord:
        payload = dict(trigger.payload)
        if trigger.kind == "schedule":
            payload.update(id=str(uuid.uuid4()), time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        pool = self.pools[trigger.function.function]
        self.say(
            f"invoking {trigger.function.function} ({trigger.kind} {trigger.name}, qualifier {trigger.qualifier}, {trigger.invocation_type})"
        )

        def done(record: AsyncRecord) -> None:
            last = record.attempts[-1] if record.attempts else None
            outcome = (
                "ok" if record.succeeded else f"failed ({last.function_error if last else 'no attempt'})"
            )
            self.say(
                f"{trigger.function.function} {trigger.kind}: {outcome} after {len(record.attempts)} attempt(s)"
            )

        # a synchronous (RequestResponse) trigger is never retried by Lambda
        configs = self._async_configs if trigger.invocation_type == "Event" else None
        record = invoke_async(
            pool, payload, qualifier=trigger.qualifier, configs=configs, source=trigger.kind,
            retry_delays=self.config.async_retry_delays, on_done=done,
        )  # fmt: skip
        with self._lock:
            self.async_records.append(record)
        return record

"""Read a cloud assembly (``cdk.out/``) and resolve its templates to local stand-ins.

:class:`Assembly` loads ``manifest.json`` and every stack template it lists.
:class:`Resolver` evaluates CloudFormation intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Join``,
``Fn::Sub``, ``Fn::Select``, ``Fn::Split``, ``Fn::ImportValue``, ``Fn::If`` with the
template's ``Conditions``) across stacks. A resource is *provisioned* the first time something
refers to it: a :class:`Provider` registered for its type creates the local stand-in (a moto
queue, secret, bucket, table, ...) from the resource's own resolved properties and returns its
``Ref`` value and attributes, as CloudFormation would. Types without a provider get stable
placeholder ids (security groups, subnets, log groups: nothing local depends on them).

The spec readers (:func:`function_specs`, :func:`api_spec`, :func:`event_source_specs`,
:func:`warmup_triggers`) turn the resolved resources into plain dataclasses the rest of the
rehearsal runs, so nothing downstream reads a template or hard-codes a value the template has.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACCOUNT",
    "REGION",
    "ApiSpec",
    "Assembly",
    "AsyncInvokeConfig",
    "EventSourceSpec",
    "FunctionSpec",
    "Mount",
    "Physical",
    "Resolver",
    "Route",
    "TemplateError",
    "Trigger",
    "api_spec",
    "event_source_specs",
    "function_arn_parts",
    "function_specs",
    "warmup_triggers",
]

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
PARTITION = "aws"


class TemplateError(ValueError):
    """The assembly holds something the rehearsal cannot run (message names the resource)."""


@dataclass
class Physical:
    """What CloudFormation would return for a resource: its ``Ref`` value and attributes."""

    ref: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stack:
    name: str
    template: dict[str, Any]
    template_file: Path

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.template.get("Resources") or {})

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}


class Assembly:
    """The stacks of one ``cdk.out`` directory, in the manifest's dependency order."""

    def __init__(self, outdir: Path | str) -> None:
        self.outdir = Path(outdir)
        manifest_file = self.outdir / "manifest.json"
        if not manifest_file.is_file():
            raise TemplateError(f"{manifest_file} not found: synthesize first (make synth)")
        self.manifest = json.loads(manifest_file.read_text())
        self.stacks: dict[str, Stack] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        artifacts = self.manifest.get("artifacts") or {}
        for name, artifact in artifacts.items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            template_file = self.outdir / artifact["properties"]["templateFile"]
            self.stacks[name] = Stack(name, json.loads(template_file.read_text()), template_file)
        for artifact in artifacts.values():
            if artifact.get("type") == "cdk:asset-manifest":
                asset_file = self.outdir / artifact["properties"]["file"]
                for digest, image in (json.loads(asset_file.read_text()).get("dockerImages") or {}).items():
                    self.assets[digest] = image
        if not self.stacks:
            raise TemplateError(f"{manifest_file} lists no CloudFormation stack")

    def stack_of_type(self, kind: str) -> list[tuple[Stack, str, dict[str, Any]]]:
        """Every resource of ``kind`` as (stack, logical id, resource)."""
        found = []
        for stack in self.stacks.values():
            for logical, resource in stack.of_type(kind).items():
                found.append((stack, logical, resource))
        return found

    def exports(self) -> dict[str, tuple[Stack, Any]]:
        """Export name -> (exporting stack, output value expression)."""
        names: dict[str, tuple[Stack, Any]] = {}
        for stack in self.stacks.values():
            for output in (stack.template.get("Outputs") or {}).values():
                export = output.get("Export")
                if export and isinstance(export.get("Name"), str):
                    names[export["Name"]] = (stack, output["Value"])
        return names


# A provider creates the stand-in for one resource type: (resolver, stack, logical id,
# resolved properties) -> Physical.
Provider = Callable[["Resolver", Stack, str, dict[str, Any]], Physical]


def _placeholder(stack: Stack, logical: str, kind: str) -> Physical:
    digest = hashlib.sha256(f"{stack.name}/{logical}".encode()).hexdigest()[:17]
    prefixes = {
        "AWS::EC2::SecurityGroup": "sg-",
        "AWS::EC2::Subnet": "subnet-",
        "AWS::EC2::VPC": "vpc-",
        "AWS::EFS::FileSystem": "fs-",
        "AWS::EFS::AccessPoint": "fsap-",
    }
    ref = prefixes.get(kind, "") + (digest if kind in prefixes else f"{stack.name}-{logical}")
    arn_service = kind.split("::")[1].lower() if kind.count("::") == 2 else "cloudformation"
    arn = f"arn:{PARTITION}:{arn_service}:{REGION}:{ACCOUNT}:{logical.lower()}/{ref}"
    if kind == "AWS::EFS::FileSystem":
        arn = f"arn:{PARTITION}:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/{ref}"
    if kind == "AWS::EFS::AccessPoint":
        arn = f"arn:{PARTITION}:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/{ref}"
    return Physical(ref, {"Arn": arn, "GroupId": ref, "Id": ref, "AccessPointId": ref, "FileSystemId": ref})


def lambda_function_provider(
    resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]
) -> Physical:
    """Functions are not created anywhere: the rehearsal runs them. Names as CloudFormation makes them."""
    name = props.get("FunctionName") or f"{stack.name}-{logical}"[:64]
    arn = f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return Physical(str(name), {"Arn": arn})


def lambda_version_provider(
    resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]
) -> Physical:
    """A published version: ``Ref`` is the qualified ARN, ``Version`` its number (one per deploy)."""
    function = str(props["FunctionName"])
    base = (
        function
        if function.startswith("arn:")
        else f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function}"
    )
    return Physical(f"{base}:1", {"Version": "1", "FunctionArn": base})


def lambda_alias_provider(resolver: Resolver, stack: Stack, logical: str, props: dict[str, Any]) -> Physical:
    function = str(props["FunctionName"])
    base = (
        function
        if function.startswith("arn:")
        else f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function}"
    )
    return Physical(f"{base}:{props['Name']}", {"AliasArn": f"{base}:{props['Name']}"})


def function_arn_parts(value: str) -> tuple[str, str]:
    """(function name, qualifier) of a function name or ARN; qualifier ``$LATEST`` when unqualified."""
    if not value.startswith("arn:"):
        name, _, qualifier = value.partition(":")
        return name, qualifier or "$LATEST"
    parts = value.split(":")
    name = parts[6]
    qualifier = parts[7] if len(parts) > 7 else "$LATEST"
    return name, qualifier


_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """Evaluates intrinsics across the assembly, provisioning resources on first reference."""

    def __init__(self, assembly: Assembly, providers: dict[str, Provider] | None = None) -> None:
        self.assembly = assembly
        self.providers: dict[str, Provider] = {
            "AWS::Lambda::Function": lambda_function_provider,
            "AWS::Lambda::Version": lambda_version_provider,
            "AWS::Lambda::Alias": lambda_alias_provider,
        }
        self.providers.update(providers or {})
        self.physical: dict[tuple[str, str], Physical] = {}
        self._in_progress: set[tuple[str, str]] = set()
        self._exports = assembly.exports()

    # --- resources -------------------------------------------------------------------------

    def provision(self, stack: Stack, logical: str) -> Physical:
        """The stand-in for ``stack``'s resource ``logical`` (created once)."""
        key = (stack.name, logical)
        if key in self.physical:
            return self.physical[key]
        resource = stack.resources.get(logical)
        if resource is None:
            raise TemplateError(f"{stack.name}: no resource {logical!r}")
        if key in self._in_progress:
            raise TemplateError(f"{stack.name}/{logical}: circular reference")
        self._in_progress.add(key)
        try:
            kind = resource["Type"]
            provider = self.providers.get(kind)
            if provider is None:
                physical = _placeholder(stack, logical, kind)
            else:
                props = self.resolve(stack, resource.get("Properties") or {})
                physical = provider(self, stack, logical, props)
        finally:
            self._in_progress.discard(key)
        self.physical[key] = physical
        return physical

    def provision_all(self, kinds: set[str]) -> None:
        """Provision every resource of the given types (in manifest order)."""
        for stack in self.assembly.stacks.values():
            for logical, resource in stack.resources.items():
                if resource.get("Type") in kinds:
                    self.provision(stack, logical)

    def physical_of(self, stack: Stack, logical: str) -> Physical:
        return self.provision(stack, logical)

    # --- intrinsics ------------------------------------------------------------------------

    def pseudo(self, stack: Stack, name: str) -> str | None:
        return {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack.name,
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{stack.name}/rehearsal",
            "AWS::NoValue": None,
        }.get(name, "")

    def ref(self, stack: Stack, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(stack, name)
        parameters = stack.template.get("Parameters") or {}
        if name in parameters:
            return parameters[name].get("Default", "")
        return self.provision(stack, name).ref

    def get_att(self, stack: Stack, logical: str, attribute: str) -> Any:
        physical = self.provision(stack, logical)
        if attribute not in physical.attrs:
            raise TemplateError(
                f"{stack.name}/{logical}: attribute {attribute!r} is not known to the rehearsal"
            )
        return physical.attrs[attribute]

    def condition(self, stack: Stack, name: str) -> bool:
        expression = (stack.template.get("Conditions") or {}).get(name)
        if expression is None:
            raise TemplateError(f"{stack.name}: no condition {name!r}")
        return bool(self.resolve(stack, expression))

    def resolve(self, stack: Stack, value: Any) -> Any:
        """``value`` with every intrinsic evaluated."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value if not _is_no_value(v)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            intrinsic = _INTRINSICS.get(key)
            if intrinsic is not None:
                return intrinsic(self, stack, arg)
        return {k: self.resolve(stack, v) for k, v in value.items() if not _is_no_value(v)}

    def resolve_list(self, stack: Stack, value: Any) -> list[Any]:
        resolved = self.resolve(stack, value)
        if not isinstance(resolved, list):
            raise TemplateError(f"{stack.name}: expected a list, got {resolved!r}")
        return resolved

    def _sub(self, stack: Stack, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {k: self.resolve(stack, v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return str(self.get_att(stack, logical, attribute))
            return str(self.ref(stack, name))

        return _SUB.sub(replace, text).replace("${!", "${")


def _is_no_value(value: Any) -> bool:
    return isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}


# --- intrinsics: one function per key, called with the resolver, the stack and the argument ---


def _get_att(r: Resolver, stack: Stack, arg: Any) -> Any:
    logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
    return r.get_att(stack, logical, attribute)


def _join(r: Resolver, stack: Stack, arg: Any) -> str:
    sep, parts = arg
    return str(sep).join(str(r.resolve(stack, p)) for p in r.resolve_list(stack, parts))


def _select(r: Resolver, stack: Stack, arg: Any) -> Any:
    index, items = arg
    return r.resolve_list(stack, items)[int(r.resolve(stack, index))]


def _split(r: Resolver, stack: Stack, arg: Any) -> list[str]:
    sep, text = arg
    return str(r.resolve(stack, text)).split(sep)


def _import_value(r: Resolver, stack: Stack, arg: Any) -> Any:
    name = r.resolve(stack, arg)
    if name not in r._exports:
        raise TemplateError(f"{stack.name}: Fn::ImportValue {name!r} is exported by no stack")
    exporter, expression = r._exports[name]
    return r.resolve(exporter, expression)


def _if(r: Resolver, stack: Stack, arg: Any) -> Any:
    name, yes, no = arg
    return r.resolve(stack, yes if r.condition(stack, name) else no)


def _equals(r: Resolver, stack: Stack, arg: Any) -> bool:
    left, right = (r.resolve(stack, a) for a in arg)
    return bool(left == right)


def _base64(r: Resolver, stack: Stack, arg: Any) -> str:
    import base64

    return base64.b64encode(str(r.resolve(stack, arg)).encode()).decode()


_INTRINSICS: dict[str, Callable[[Resolver, Stack, Any], Any]] = {
    "Ref": lambda r, stack, arg: r.ref(stack, arg),
    "Fn::GetAtt": _get_att,
    "Fn::Join": _join,
    "Fn::Sub": lambda r, stack, arg: r._sub(stack, arg),
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::ImportValue": _import_value,
    "Fn::If": _if,
    "Fn::Equals": _equals,
    "Fn::Not": lambda r, stack, arg: not r.resolve(stack, arg[0]),
    "Fn::And": lambda r, stack, arg: all(r.resolve(stack, a) for a in arg),
    "Fn::Or": lambda r, stack, arg: any(r.resolve(stack, a) for a in arg),
    "Condition": lambda r, stack, arg: r.condition(stack, arg),
    "Fn::GetAZs": lambda r, stack, arg: [f"{REGION}a", f"{REGION}b", f"{REGION}c"],
    "Fn::Base64": _base64,
}
"""The intrinsic functions the rehearsal evaluates (a one-key dict with another key is data)."""


# --- specs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """An EFS access point mounted into a function: a bind mount of the local store."""

    local_mount_path: str
    access_point: str  # the access point's physical id
    root_path: str  # the access point's root directory inside the file system
    uid: int
    gid: int
    read_only: bool


@dataclass(frozen=True)
class FunctionSpec:
    """One image function as the template declares it."""

    stack: str
    logical_id: str
    name: str
    arn: str
    function: str  # the functions/<name> directory its image is built from
    command: tuple[str, ...]
    memory_mb: int
    timeout_s: int
    ephemeral_mb: int
    architecture: str
    environment: dict[str, str]
    mounts: tuple[Mount, ...]
    reserved_concurrency: int | None
    role: str


def _policy_actions(resolver: Resolver, stack: Stack, role_logical: str) -> set[str]:
    """Every action the role's inline policies (AWS::IAM::Policy attached to it) allow."""
    actions: set[str] = set()
    for policy in stack.of_type("AWS::IAM::Policy").values():
        roles = (policy.get("Properties") or {}).get("Roles") or []
        if {"Ref": role_logical} not in roles:
            continue
        document = (policy["Properties"].get("PolicyDocument") or {}).get("Statement") or []
        for statement in document:
            if statement.get("Effect") != "Allow":
                continue
            listed = statement.get("Action") or []
            actions.update([listed] if isinstance(listed, str) else listed)
    role = stack.resources.get(role_logical) or {}
    for inline in (role.get("Properties") or {}).get("Policies") or []:
        for statement in (inline.get("PolicyDocument") or {}).get("Statement") or []:
            if statement.get("Effect") == "Allow":
                listed = statement.get("Action") or []
                actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def _grants(actions: set[str], action: str) -> bool:
    service = action.split(":", 1)[0]
    return action in actions or f"{service}:*" in actions or "*" in actions


def _access_point(resolver: Resolver, arn: str) -> tuple[Stack, str, dict[str, Any]]:
    for stack, logical, resource in resolver.assembly.stack_of_type("AWS::EFS::AccessPoint"):
        physical = resolver.provision(stack, logical)
        if arn.endswith(f"access-point/{physical.ref}") or arn == physical.attrs.get("Arn"):
            return stack, logical, resource
    raise TemplateError(f"no AWS::EFS::AccessPoint in the assembly matches {arn}")


def asset_function(asset: dict[str, Any]) -> str | None:
    """The function an image asset builds: its FUNCTION build argument (one shared Dockerfile)
    or its ``functions/<name>/Dockerfile``."""
    source = asset.get("source") or {}
    argument = (source.get("dockerBuildArgs") or {}).get("FUNCTION")
    if argument:
        return str(argument)
    match = re.fullmatch(r"functions/([\w-]+)/Dockerfile", str(source.get("dockerFile", "")))
    return match.group(1) if match else None


def function_specs(resolver: Resolver) -> dict[str, FunctionSpec]:
    """Every image function (``PackageType: Image``), by its template logical id prefix
    (``Predict``, ``Index``, ``Warmup``: the functions/<name> directory, capitalized)."""
    specs: dict[str, FunctionSpec] = {}
    for stack, logical, resource in resolver.assembly.stack_of_type("AWS::Lambda::Function"):
        raw = resource.get("Properties") or {}
        if raw.get("PackageType") != "Image":
            continue
        props = resolver.resolve(stack, raw)
        physical = resolver.provision(stack, logical)
        image_uri = str(props["Code"]["ImageUri"])
        digest = image_uri.rsplit(":", 1)[-1]
        asset = resolver.assembly.assets.get(digest)
        if asset is None:
            raise TemplateError(f"{stack.name}/{logical}: image {image_uri} is not an asset of this assembly")
        function = asset_function(asset)
        if function is None:
            raise TemplateError(
                f"{stack.name}/{logical}: cannot tell which function image {digest} is (asset {asset['source']})"
            )
        role_ref = raw.get("Role", {}).get("Fn::GetAtt", [None])[0]
        actions = _policy_actions(resolver, stack, role_ref) if role_ref else set()
        mounts = []
        for config in props.get("FileSystemConfigs") or []:
            ap_stack, ap_logical, ap_resource = _access_point(resolver, str(config["Arn"]))
            ap_props = resolver.resolve(ap_stack, ap_resource.get("Properties") or {})
            posix = ap_props.get("PosixUser") or {}
            if not _grants(actions, "elasticfilesystem:ClientMount"):
                raise TemplateError(
                    f"{stack.name}/{logical}: mounts {config['Arn']} but its role has no "
                    "elasticfilesystem:ClientMount (the mount would fail in Lambda)"
                )
            mounts.append(
                Mount(
                    local_mount_path=str(config["LocalMountPath"]),
                    access_point=resolver.provision(ap_stack, ap_logical).ref,
                    root_path=str((ap_props.get("RootDirectory") or {}).get("Path", "/")),
                    uid=int(posix.get("Uid", 0)),
                    gid=int(posix.get("Gid", 0)),
                    read_only=not _grants(actions, "elasticfilesystem:ClientWrite"),
                )
            )
        reserved = props.get("ReservedConcurrentExecutions")
        specs[function] = FunctionSpec(
            stack=stack.name,
            logical_id=logical,
            name=physical.ref,
            arn=physical.attrs["Arn"],
            function=function,
            command=tuple((props.get("ImageConfig") or {}).get("Command") or ()),
            memory_mb=int(props.get("MemorySize", 128)),
            timeout_s=int(props.get("Timeout", 3)),
            ephemeral_mb=int((props.get("EphemeralStorage") or {}).get("Size", 512)),
            architecture=str((props.get("Architectures") or ["x86_64"])[0]),
            environment={
                k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()
            },
            mounts=tuple(mounts),
            reserved_concurrency=int(reserved) if reserved is not None else None,
            role=str(role_ref or ""),
        )
    return specs


def _function_for(specs: dict[str, FunctionSpec], value: str) -> tuple[FunctionSpec, str]:
    name, qualifier = function_arn_parts(value)
    for spec in specs.values():
        if spec.name == name:
            return spec, qualifier
    raise TemplateError(f"{value} names no image function of the assembly")


# --- API ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JwtAuthorizer:
    name: str
    issuer: str
    audience: tuple[str, ...]
    identity_source: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ..., or ANY
    path: str  # /health, /{proxy+}, ... or "" for $default
    authorization: str  # NONE or JWT
    authorizer: JwtAuthorizer | None
    function: FunctionSpec
    qualifier: str
    payload_version: str
    timeout_ms: int
    scopes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return "$default" if not self.path else f"{self.method} {self.path}"


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    max_age: int | None
    allow_credentials: bool


@dataclass(frozen=True)
class StageSpec:
    name: str
    throttle_rate: float | None
    throttle_burst: int | None


@dataclass(frozen=True)
class ApiSpec:
    name: str
    routes: tuple[Route, ...]
    cors: Cors | None
    stages: tuple[StageSpec, ...]


def api_spec(resolver: Resolver, functions: dict[str, FunctionSpec]) -> ApiSpec:
    """The one HTTP API of the assembly (AWS::ApiGatewayV2::*)."""
    apis = [
        a
        for a in resolver.assembly.stack_of_type("AWS::ApiGatewayV2::Api")
        if (a[2].get("Properties") or {}).get("ProtocolType") == "HTTP"
    ]
    if len(apis) != 1:
        raise TemplateError(f"expected one HTTP API in the assembly, found {len(apis)}")
    stack, api_logical, api = apis[0]
    api_props = resolver.resolve(stack, api.get("Properties") or {})
    authorizers = {
        logical: _jwt_authorizer(resolver, stack, logical, resource)
        for logical, resource in _of_api(stack, "AWS::ApiGatewayV2::Authorizer", api_logical)
    }
    integrations = {
        logical: resolver.resolve(stack, resource["Properties"])
        for logical, resource in _of_api(stack, "AWS::ApiGatewayV2::Integration", api_logical)
    }
    routes = [
        _route(resolver, stack, logical, resource["Properties"], integrations, authorizers, functions)
        for logical, resource in _of_api(stack, "AWS::ApiGatewayV2::Route", api_logical)
    ]
    config = api_props.get("CorsConfiguration")
    cors = _cors(config) if config else None
    stages = [
        _stage(resolver.resolve(stack, resource["Properties"]))
        for _, resource in _of_api(stack, "AWS::ApiGatewayV2::Stage", api_logical)
    ]
    if not stages:
        raise TemplateError(f"{stack.name}/{api_logical}: the HTTP API has no stage (nothing would serve it)")
    return ApiSpec(
        name=str(api_props.get("Name", api_logical)), routes=tuple(routes), cors=cors, stages=tuple(stages)
    )


def _of_api(stack: Stack, kind: str, api_logical: str) -> list[tuple[str, dict[str, Any]]]:
    """The resources of ``kind`` that belong to the API ``api_logical`` (``ApiId: {Ref: ...}``)."""
    return [
        (logical, resource)
        for logical, resource in stack.of_type(kind).items()
        if (resource.get("Properties") or {}).get("ApiId") == {"Ref": api_logical}
    ]


def _jwt_authorizer(
    resolver: Resolver, stack: Stack, logical: str, resource: dict[str, Any]
) -> JwtAuthorizer:
    props = resolver.resolve(stack, resource["Properties"])
    if props.get("AuthorizerType") != "JWT":
        raise TemplateError(
            f"{stack.name}/{logical}: only JWT authorizers are rehearsed, not {props.get('AuthorizerType')}"
        )
    jwt_config = props.get("JwtConfiguration") or {}
    return JwtAuthorizer(
        name=str(props.get("Name", logical)),
        issuer=str(jwt_config.get("Issuer", "")),
        audience=tuple(str(a) for a in jwt_config.get("Audience") or ()),
        identity_source=tuple(props.get("IdentitySource") or ("$request.header.Authorization",)),
    )


def _route(
    resolver: Resolver,
    stack: Stack,
    logical: str,
    raw: dict[str, Any],
    integrations: dict[str, dict[str, Any]],
    authorizers: dict[str, JwtAuthorizer],
    functions: dict[str, FunctionSpec],
) -> Route:
    props = resolver.resolve(stack, raw)
    target = str(props.get("Target", ""))
    integration_id = None
    for candidate in integrations:
        if target == f"integrations/{resolver.provision(stack, candidate).ref}":
            integration_id = candidate
    if integration_id is None:
        raise TemplateError(f"{stack.name}/{logical}: target {target!r} is no integration of the API")
    integration = integrations[integration_id]
    if integration.get("IntegrationType") != "AWS_PROXY":
        raise TemplateError(f"{stack.name}/{logical}: only Lambda proxy integrations are rehearsed")
    function, qualifier = _function_for(functions, str(integration["IntegrationUri"]))
    authorizer_ref = (raw.get("AuthorizerId") or {}).get("Ref")
    route_key = str(props["RouteKey"])
    method, _, path = route_key.partition(" ")
    if route_key == "$default":
        method, path = "ANY", ""
    return Route(
        method=method,
        path=path,
        authorization=str(props.get("AuthorizationType", "NONE")),
        authorizer=authorizers.get(authorizer_ref) if authorizer_ref else None,
        function=function,
        qualifier=qualifier,
        payload_version=str(integration.get("PayloadFormatVersion", "2.0")),
        timeout_ms=int(integration.get("TimeoutInMillis", 30000)),
        scopes=tuple(props.get("AuthorizationScopes") or ()),
    )


def _cors(config: dict[str, Any]) -> Cors:
    return Cors(
        allow_origins=tuple(config.get("AllowOrigins") or ()),
        allow_methods=tuple(config.get("AllowMethods") or ()),
        allow_headers=tuple(h.lower() for h in config.get("AllowHeaders") or ()),
        expose_headers=tuple(config.get("ExposeHeaders") or ()),
        max_age=int(config["MaxAge"]) if config.get("MaxAge") is not None else None,
        allow_credentials=bool(config.get("AllowCredentials", False)),
    )


def _stage(props: dict[str, Any]) -> StageSpec:
    defaults = props.get("DefaultRouteSettings") or {}
    return StageSpec(
        name=str(props["StageName"]),
        throttle_rate=defaults.get("ThrottlingRateLimit"),
        throttle_burst=defaults.get("ThrottlingBurstLimit"),
    )


# --- event sources and triggers ---------------------------------------------------------------


@dataclass(frozen=True)
class EventSourceSpec:
    function: FunctionSpec
    queue_arn: str
    batch_size: int
    batching_window_s: int
    max_concurrency: int | None
    report_batch_item_failures: bool
    enabled: bool


def event_source_specs(resolver: Resolver, functions: dict[str, FunctionSpec]) -> list[EventSourceSpec]:
    found = []
    for stack, _logical, resource in resolver.assembly.stack_of_type("AWS::Lambda::EventSourceMapping"):
        props = resolver.resolve(stack, resource["Properties"])
        function, _ = _function_for(functions, str(props["FunctionName"]))
        queue_arn = str(props.get("EventSourceArn", ""))
        if ":sqs:" not in queue_arn:
            raise TemplateError(f"event source {queue_arn} is not an SQS queue; only SQS is rehearsed")
        found.append(
            EventSourceSpec(
                function=function,
                queue_arn=queue_arn,
                batch_size=int(props.get("BatchSize", 10)),
                batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                max_concurrency=(props.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
                enabled=bool(props.get("Enabled", True)),
            )
        )
    return found


@dataclass(frozen=True)
class AsyncInvokeConfig:
    qualifier: str
    maximum_retry_attempts: int
    maximum_event_age_s: int


@dataclass(frozen=True)
class Trigger:
    """Something that invokes a function asynchronously: the after-deploy trigger or a schedule."""

    kind: str  # "after-deploy" | "schedule"
    name: str
    function: FunctionSpec
    qualifier: str
    payload: dict[str, Any]
    invocation_type: str  # Event | RequestResponse
    schedule: str | None = None
    target_retry_attempts: int | None = None  # EventBridge's own retry policy (schedule targets)


def async_invoke_configs(
    resolver: Resolver, functions: dict[str, FunctionSpec]
) -> dict[tuple[str, str], AsyncInvokeConfig]:
    """(function name, qualifier) -> its EventInvokeConfig. Unlisted pairs get Lambda's default (2 retries, 6 h)."""
    configs = {}
    for stack, _logical, resource in resolver.assembly.stack_of_type("AWS::Lambda::EventInvokeConfig"):
        props = resolver.resolve(stack, resource["Properties"])
        function, _ = _function_for(functions, str(props["FunctionName"]))
        qualifier = str(props.get("Qualifier", "$LATEST"))
        configs[(function.name, qualifier)] = AsyncInvokeConfig(
            qualifier=qualifier,
            maximum_retry_attempts=int(props.get("MaximumRetryAttempts", 2)),
            maximum_event_age_s=int(props.get("MaximumEventAgeInSeconds", 21600)),
        )
    return configs


def warmup_triggers(resolver: Resolver, functions: dict[str, FunctionSpec]) -> list[Trigger]:
    """The CDK triggers (``Custom::Trigger``) and scheduled EventBridge rules that invoke image functions."""
    found = []
    for stack, logical, resource in resolver.assembly.stack_of_type("Custom::Trigger"):
        raw = resource.get("Properties") or {}
        handler = resolver.resolve(stack, raw.get("HandlerArn"))
        function, qualifier = _function_for(functions, str(handler))
        # The CDK trigger provider invokes the handler with no payload: Lambda passes {}.
        found.append(
            Trigger(
                kind="after-deploy",
                name=logical,
                function=function,
                qualifier=qualifier,
                payload={},
                invocation_type=str(raw.get("InvocationType", "RequestResponse")),
            )
        )
    for stack, logical, resource in resolver.assembly.stack_of_type("AWS::Events::Rule"):
        props = resolver.resolve(stack, resource.get("Properties") or {})
        schedule = props.get("ScheduleExpression")
        if not schedule or props.get("State", "ENABLED") != "ENABLED":
            continue
        rule_arn = f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:rule/{stack.name}-{logical}"
        for target in props.get("Targets") or []:
            try:
                function, qualifier = _function_for(functions, str(target["Arn"]))
            except TemplateError:
                continue
            payload = (
                json.loads(target["Input"])
                if target.get("Input")
                else {
                    "version": "0",
                    "id": "rehearsal",
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": ACCOUNT,
                    "time": "1970-01-01T00:00:00Z",
                    "region": REGION,
                    "resources": [rule_arn],
                    "detail": {},
                }
            )
            retry = (target.get("RetryPolicy") or {}).get("MaximumRetryAttempts")
            found.append(
                Trigger(
                    kind="schedule",
                    name=logical,
                    function=function,
                    qualifier=qualifier,
                    payload=payload,
                    invocation_type="Event",
                    schedule=str(schedule),
                    target_retry_attempts=int(retry) if retry is not None else 185,
                )
            )
    return found

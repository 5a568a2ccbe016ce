"""The front door built from the template behaves as API Gateway documents HTTP APIs.

The integration here is a stub that echoes the payload 2.0 event (or misbehaves on purpose),
so these tests pin the gateway's side: routes, the JWT authorizer, CORS and the limits. The
functions behind it are the real images in test_rehearsal.py.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from hflambda.auth.devissuer import DevIssuer
from rehearsal.aws import PROVISIONED_TYPES, Moto, aws_providers
from rehearsal.frontdoor import REQUEST_LIMIT_BYTES, FrontDoor, select_route
from rehearsal.functions import RESPONSE_LIMIT_BYTES, Invocation
from rehearsal.template import ApiSpec, Assembly, Resolver, Route, api_spec, function_specs
from tests.rehearsal.conftest import APP_ORIGIN


def _echo(route: Route, event: dict[str, Any], timeout: float) -> Invocation:
    path = event["rawPath"]
    if path.endswith("/big"):
        return Invocation(json.dumps({"statusCode": 200, "body": "x" * (RESPONSE_LIMIT_BYTES + 10)}).encode())
    if path.endswith("/slow"):
        time.sleep(timeout + 1.5)
    if path.endswith("/crash"):
        return Invocation(b'{"errorMessage": "boom", "errorType": "RuntimeError"}', "Unhandled")
    return Invocation(
        json.dumps(
            {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
        ).encode()
    )


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevIssuer]:
    key_dir = tmp_path_factory.mktemp("issuer")
    with DevIssuer(key_dir, audience="hflambda").serve() as served:
        yield served


def _api(outdir: Path, store: Path, issuer: DevIssuer) -> ApiSpec:
    moto = Moto().start()
    try:
        resolver = Resolver(Assembly(outdir), aws_providers(moto, store))
        resolver.provision_all(set(PROVISIONED_TYPES))
        api = api_spec(resolver, function_specs(resolver))
    finally:
        moto.stop()
    routes = tuple(
        replace(r, authorizer=replace(r.authorizer, issuer=issuer.issuer)) if r.authorizer else r
        for r in api.routes
    )
    return replace(api, routes=routes)


@pytest.fixture(scope="module")
def api(assembly: Path, tmp_path_factory: pytest.TempPathFactory, issuer: DevIssuer) -> ApiSpec:
    return _api(assembly, tmp_path_factory.mktemp("store"), issuer)


@pytest.fixture(scope="module")
def door(api: ApiSpec) -> Iterator[FrontDoor]:
    served = FrontDoor(api, _echo).start()
    try:
        yield served
    finally:
        served.stop()


def _get(door: FrontDoor, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.request(kwargs.pop("method", "GET"), door.url + path, headers=headers, timeout=60, **kwargs)


def test_health_needs_no_token_and_other_routes_do(door: FrontDoor) -> None:
    assert _get(door, "/health").status_code == 200
    refused = _get(door, "/v1/models")
    assert refused.status_code == 401 and refused.json() == {"message": "Unauthorized"}


def test_claims_reach_the_function_as_strings(door: FrontDoor, issuer: DevIssuer) -> None:
    token = issuer.token("alice", azp=APP_ORIGIN, roles=["a", "b"], admin=False)
    event = _get(door, "/v1/models", token).json()
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "alice" and claims["azp"] == APP_ORIGIN
    assert all(isinstance(v, str) for v in claims.values())
    assert claims["exp"].isdigit() and claims["roles"] == "[a b]" and claims["admin"] == "false"
    assert event["version"] == "2.0" and event["rawPath"] == "/v1/models"
    assert event["requestContext"]["stage"] == "$default"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"audience": "someone-else"}, "audience"),
        ({"audience": None}, "audience"),
        ({"ttl": -10}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"issuer": "https://other.example.com"}, "issuer"),
    ],
)
def test_the_authorizer_refuses_what_api_gateway_refuses(
    door: FrontDoor, issuer: DevIssuer, claims: dict[str, Any], why: str
) -> None:
    response = _get(door, "/v1/models", issuer.token("alice", **claims))
    assert response.status_code == 401
    assert why in response.headers["www-authenticate"]


def test_client_id_stands_in_for_a_missing_aud(door: FrontDoor, issuer: DevIssuer) -> None:
    assert (
        _get(door, "/v1/models", issuer.token("alice", audience=None, client_id="hflambda")).status_code
        == 200
    )


def test_only_rs256_is_accepted(door: FrontDoor, issuer: DevIssuer) -> None:
    import jwt

    forged = jwt.encode(
        {"sub": "x", "iss": issuer.issuer, "aud": "hflambda", "exp": int(time.time()) + 60},
        "k" * 32,
        algorithm="HS256",
    )
    assert _get(door, "/v1/models", forged).status_code == 401


def test_a_browser_preflight_gets_cors_headers_not_a_401(door: FrontDoor, api: ApiSpec) -> None:
    assert api.cors is not None and APP_ORIGIN in api.cors.allow_origins
    response = _get(
        door,
        "/v1/search",
        method="OPTIONS",
        headers={
            "origin": APP_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "authorization" in response.headers["access-control-allow-headers"]


def test_preflight_through_an_authorized_any_route_is_a_401(api: ApiSpec) -> None:
    """The shape review finding 4 found: `ANY /{proxy+}` with the authorizer takes OPTIONS too."""
    authorized = next(r for r in api.routes if r.authorization == "JWT")
    old_shape = replace(
        api,
        routes=(
            *[r for r in api.routes if r.authorization != "JWT"],
            replace(authorized, method="ANY", path="/{proxy+}"),
        ),
    )
    served = FrontDoor(old_shape, _echo).start()
    try:
        response = _get(
            served,
            "/v1/search",
            method="OPTIONS",
            headers={"origin": APP_ORIGIN, "access-control-request-method": "POST"},
        )
        assert response.status_code == 401
    finally:
        served.stop()


def test_route_selection_prefers_the_most_specific(api: ApiSpec) -> None:
    selected = select_route(api.routes, "GET", "/health")
    assert selected is not None and selected[0].path == "/health"
    selected = select_route(api.routes, "POST", "/v1/models/embed/predict")
    assert selected is not None and selected[0].path == "/{proxy+}"
    assert selected[1] == {"proxy": "v1/models/embed/predict"}
    assert select_route(api.routes, "OPTIONS", "/v1/search") is None


def test_a_request_over_10_mb_is_refused_before_the_integration(door: FrontDoor, issuer: DevIssuer) -> None:
    started = time.monotonic()
    response = _get(
        door, "/v1/documents", issuer.token("alice"), method="POST", content=b"x" * (REQUEST_LIMIT_BYTES + 1)
    )
    assert response.status_code == 413 and response.json() == {"message": "Request Entity Too Large"}
    assert time.monotonic() - started < 10


def test_a_response_over_6_mb_is_the_gateways_error_not_a_hang(door: FrontDoor, issuer: DevIssuer) -> None:
    started = time.monotonic()
    response = _get(door, "/v1/big", issuer.token("alice"))
    assert response.status_code == 500 and response.json() == {"message": "Internal Server Error"}
    assert time.monotonic() - started < 10
    assert "ResponseSizeTooLarge" in (door.records[-1].integration_error or "")


def test_a_function_error_is_a_500(door: FrontDoor, issuer: DevIssuer) -> None:
    response = _get(door, "/v1/crash", issuer.token("alice"))
    assert response.status_code == 500 and response.json() == {"message": "Internal Server Error"}


def test_an_integration_past_its_timeout_is_a_503(api: ApiSpec, issuer: DevIssuer) -> None:
    """API Gateway stops waiting at the integration timeout (30 s at most); shortened here."""
    assert all(r.timeout_ms <= 30_000 for r in api.routes)
    short = replace(api, routes=tuple(replace(r, timeout_ms=1000) for r in api.routes))
    served = FrontDoor(short, _echo).start()
    try:
        started = time.monotonic()
        response = _get(served, "/v1/slow", issuer.token("alice"))
        assert response.status_code == 503 and response.json() == {"message": "Service Unavailable"}
        assert time.monotonic() - started < 2.5
    finally:
        served.stop()


def test_a_named_stage_serves_under_its_name(assembly: Path, tmp_path: Path, issuer: DevIssuer) -> None:
    copy = tmp_path / "cdk.out"
    shutil.copytree(assembly, copy, ignore=shutil.ignore_patterns("asset.*"))
    for template_file in copy.glob("*.template.json"):
        template = json.loads(template_file.read_text())
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == "AWS::ApiGatewayV2::Stage":
                resource["Properties"]["StageName"] = "prod"
        template_file.write_text(json.dumps(template))
    served = FrontDoor(_api(copy, tmp_path / "store", issuer), _echo).start()
    try:
        assert served.url.endswith("/prod")
        event = _get(served, "/v1/models", issuer.token("alice")).json()
        assert event["rawPath"] == "/prod/v1/models" and event["requestContext"]["stage"] == "prod"
        assert httpx.get(served.url.removesuffix("/prod") + "/v1/models").status_code == 404
    finally:
        served.stop()

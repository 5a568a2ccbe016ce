"""``identify`` configured through HFLAMBDA_AUTH_* against a dev issuer serving its JWKS on loopback."""

from __future__ import annotations

import logging
import secrets
import socket
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from hflambda import telemetry
from hflambda.auth import current_verifier, identify
from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from hflambda.cli import app
from hflambda.errors import AuthError, AuthNotConfigured, AuthUnavailable
from tests.fixtures.auth import APP_ORIGIN, BAD_TOKEN_NAMES, apigw_event, bad_tokens

pytestmark = pytest.mark.integration


def bearer(token: str) -> str:
    return f"Bearer {token}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dev_issuer_serves_jwks_and_discovery(dev_issuer: DevIssuer) -> None:
    assert dev_issuer.issuer and dev_issuer.issuer.startswith("http://127.0.0.1:")
    jwks = httpx.get(dev_issuer.issuer + "/.well-known/jwks.json").json()
    assert jwks == dev_issuer.jwks()
    discovery = httpx.get(dev_issuer.issuer + "/.well-known/openid-configuration").json()
    assert discovery["issuer"] == dev_issuer.issuer
    assert discovery["jwks_uri"] == dev_issuer.issuer + "/.well-known/jwks.json"
    assert httpx.get(dev_issuer.issuer + "/anything-else").status_code == 404
    assert DevIssuer.recorded(dev_issuer.key_dir) == {
        "issuer": dev_issuer.issuer,
        "audience": DEV_AUDIENCE,
        "jwks_uri": dev_issuer.issuer + "/.well-known/jwks.json",
        "kid": dev_issuer.kid,
    }


def test_valid_token_is_accepted(auth_env: DevIssuer) -> None:
    identity = identify(None, bearer(auth_env.token("alice", azp=APP_ORIGIN)))
    assert identity.sub == "alice"
    assert identity.source == "bearer"
    assert identity.claims["aud"] == DEV_AUDIENCE


@pytest.fixture(scope="module")
def forged(dev_issuer: DevIssuer, attacker_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    assert dev_issuer.issuer
    return bad_tokens(dev_issuer, attacker_key, iss=dev_issuer.issuer, audience=DEV_AUDIENCE)


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_token_is_rejected(name: str, forged: dict[str, Any], auth_env: DevIssuer) -> None:
    case = forged[name]
    with pytest.raises(AuthError) as caught:
        identify(None, bearer(case.token))
    assert (type(caught.value), caught.value.description) == (AuthError, case.description)


def test_random_kids_cause_at_most_one_refetch(auth_env: DevIssuer) -> None:
    identify(None, bearer(auth_env.token("alice", azp=APP_ORIGIN)))  # warm the cache
    before = auth_env.jwks_requests
    for _ in range(50):
        token = auth_env.sign({"iss": auth_env.issuer, "sub": "x"}, headers={"kid": secrets.token_hex(8)})
        with pytest.raises(AuthError, match="unknown kid"):
            identify(None, bearer(token))
    assert auth_env.jwks_requests - before <= 1


def test_first_request_with_an_unknown_kid_fetches_once(auth_env: DevIssuer) -> None:
    before = auth_env.jwks_requests
    for _ in range(50):
        token = auth_env.sign({"iss": auth_env.issuer, "sub": "x"}, headers={"kid": secrets.token_hex(8)})
        with pytest.raises(AuthError, match="unknown kid"):
            identify(None, bearer(token))
    assert auth_env.jwks_requests - before == 1


def test_unreachable_jwks_fails_closed(dev_issuer: DevIssuer, auth_settings: Callable[..., None]) -> None:
    auth_settings(
        issuer=dev_issuer.issuer,
        audience=DEV_AUDIENCE,
        jwks_url=f"http://127.0.0.1:{closed_port()}/.well-known/jwks.json",
    )
    with pytest.raises(AuthUnavailable) as caught:
        identify(None, bearer(dev_issuer.token("alice")))
    assert caught.value.status == 503


def test_jwks_answering_404_fails_closed(dev_issuer: DevIssuer, auth_settings: Callable[..., None]) -> None:
    auth_settings(issuer=dev_issuer.issuer, audience=DEV_AUDIENCE, jwks_url=f"{dev_issuer.issuer}/nope.json")
    with pytest.raises(AuthUnavailable):
        identify(None, bearer(dev_issuer.token("alice")))


def test_no_issuer_configured(dev_issuer: DevIssuer, auth_settings: Callable[..., None]) -> None:
    with pytest.raises(AuthNotConfigured) as caught:
        identify(None, bearer(dev_issuer.token("alice")))
    assert caught.value.status == 401


def test_lambda_event_without_claims_ignores_a_valid_bearer_token(auth_env: DevIssuer) -> None:
    token = bearer(auth_env.token("alice", azp=APP_ORIGIN))
    assert identify(None, token).sub == "alice"
    with pytest.raises(AuthError, match="authorizer"):
        identify(apigw_event("GET", "/v1/models", headers={"authorization": token}), token)


def test_lambda_event_with_claims_gives_identity(auth_env: DevIssuer) -> None:
    # auth_env configures authorized parties: they hold on the authorizer's claims too
    claims = {"sub": "user_1", "iss": "https://clerk.example", "azp": APP_ORIGIN}
    assert identify(apigw_event("GET", "/v1/models", claims=claims), None).sub == "user_1"
    with pytest.raises(AuthError, match="azp not allowed"):
        identify(
            apigw_event("GET", "/v1/models", claims={**claims, "azp": "https://elsewhere.example"}), None
        )


def test_settings_swap_picks_up_a_new_issuer(
    auth_env: DevIssuer, auth_settings: Callable[..., None], tmp_path: Any
) -> None:
    first = current_verifier()
    with DevIssuer(tmp_path / "second").serve() as second:
        auth_settings(issuer=second.issuer, audience=DEV_AUDIENCE, authorized_parties=None)
        assert current_verifier() is not first
        assert identify(None, bearer(second.token("carol"))).sub == "carol"
        with pytest.raises(AuthError, match=r"wrong issuer|unknown kid"):
            identify(None, bearer(auth_env.token("alice")))


def test_cli_token_is_accepted_by_the_running_issuer(
    auth_env: DevIssuer, auth_settings: Callable[..., None]
) -> None:
    auth_settings(authorized_parties=None)
    result = CliRunner().invoke(app, ["token", "--sub", "alice", "--key-dir", str(auth_env.key_dir)])
    handler = getattr(telemetry.logger, "registered_handler", None)
    if isinstance(handler, logging.StreamHandler):  # see tests/unit/test_auth_devissuer.py
        handler.stream = sys.stderr
    assert result.exit_code == 0, result.stderr
    identity = identify(None, bearer(result.stdout.strip()))
    assert identity.sub == "alice"
    assert identity.claims["iss"] == auth_env.issuer

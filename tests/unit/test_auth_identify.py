"""``identify``: authorizer claims under Lambda, a verified bearer token elsewhere, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hflambda.auth import Identity, Verifier, current_verifier, identify, resolver
from hflambda.auth.devissuer import DevIssuer
from hflambda.errors import AuthError, AuthNotConfigured, AuthUnavailable
from tests.fixtures.auth import FakeJwks, apigw_event

ISSUER = "https://issuer.example"
AUDIENCE = "hflambda-test"
CLAIMS = {
    "sub": "user_2abc",
    "iss": ISSUER,
    "aud": "[hflambda-test]",
    "exp": "1900000000",
    "azp": "https://app.example",
}


def test_lambda_event_with_authorizer_claims_gives_identity() -> None:
    identity = identify(apigw_event("GET", "/v1/models", claims=CLAIMS), None)
    assert identity == Identity(sub="user_2abc", claims=CLAIMS, source="authorizer")


def test_lambda_claims_need_no_auth_settings(auth_settings: Callable[..., None]) -> None:
    # the authorizer verified the token; the function need not (and does not) re-verify
    assert identify(apigw_event("GET", "/v1/models", claims=CLAIMS), "Bearer junk").sub == "user_2abc"


@pytest.mark.parametrize(
    "event",
    [
        apigw_event("GET", "/v1/models"),
        apigw_event("GET", "/v1/models", claims={}),
        {**apigw_event("GET", "/v1/models"), "requestContext": {"authorizer": {"lambda": {"sub": "x"}}}},
        {**apigw_event("GET", "/v1/models"), "requestContext": {"authorizer": {"jwt": {"claims": "sub=x"}}}},
        {"requestContext": None},
        {},
    ],
    ids=[
        "no-authorizer",
        "empty-claims",
        "lambda-authorizer",
        "claims-not-a-map",
        "null-context",
        "empty-event",
    ],
)
def test_lambda_event_without_claims_is_refused_even_with_a_valid_bearer_token(
    event: dict[str, object], dev_keys: DevIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = Verifier(issuer=ISSUER, jwks=FakeJwks(dev_keys.jwks()).cache(), audience=AUDIENCE)
    monkeypatch.setattr(resolver, "current_verifier", lambda: verifier)
    bearer = "Bearer " + dev_keys.token("mallory", issuer=ISSUER, audience=AUDIENCE)
    assert identify(None, bearer).sub == "mallory"  # the token really is valid off Lambda
    with pytest.raises(AuthError) as caught:
        identify(event, bearer)
    assert caught.value.status == 401
    assert "authorizer" in caught.value.description


@pytest.mark.parametrize("sub", [None, "", "  "])
def test_lambda_claims_without_sub_are_refused(sub: str | None) -> None:
    claims = {k: v for k, v in {**CLAIMS, "sub": sub}.items() if v is not None}
    with pytest.raises(AuthError, match="authorizer claims have no sub"):
        identify(apigw_event("GET", "/v1/models", claims=claims), None)


@pytest.mark.parametrize("header", [None, "Bearer a.b.c"])
def test_no_issuer_configured_refuses_everything(
    header: str | None, auth_settings: Callable[..., None]
) -> None:
    with pytest.raises(AuthNotConfigured) as caught:
        identify(None, header)
    assert caught.value.status == 401
    assert caught.value.description.startswith("authentication is not configured")


def test_audience_and_parties_without_issuer_are_still_not_configured(
    auth_settings: Callable[..., None],
) -> None:
    auth_settings(audience=AUDIENCE, authorized_parties="https://app.example", jwks_url=ISSUER + "/jwks")
    with pytest.raises(AuthNotConfigured):
        current_verifier()


def test_plain_http_jwks_off_loopback_is_refused(auth_settings: Callable[..., None]) -> None:
    auth_settings(issuer="http://issuer.example")
    with pytest.raises(AuthUnavailable, match="misconfigured"):
        identify(None, "Bearer a.b.c")


def test_verifier_follows_the_settings(auth_settings: Callable[..., None]) -> None:
    auth_settings(issuer=ISSUER, audience=AUDIENCE, authorized_parties="https://a.example, https://b.example")
    first = current_verifier()
    assert current_verifier() is first  # one verifier (and JWKS cache) per configuration
    assert first.issuer == ISSUER
    assert first.jwks.url == ISSUER + "/.well-known/jwks.json"
    assert first.audience == AUDIENCE
    assert first.authorized_parties == {"https://a.example", "https://b.example"}
    auth_settings(issuer="https://other.example", jwks_url="https://keys.example/jwks.json")
    second = current_verifier()
    assert second is not first
    assert (second.issuer, second.jwks.url) == ("https://other.example", "https://keys.example/jwks.json")


@pytest.mark.parametrize(
    ("azp", "description"),
    [
        ("https://evil.example", "azp not allowed"),
        (None, "missing azp claim (authorized parties are configured)"),
        ("", "missing azp claim (authorized parties are configured)"),
    ],
    ids=["foreign", "absent", "empty"],
)
def test_lambda_claims_enforce_authorized_parties_with_the_bearer_paths_error(
    azp: str | None,
    description: str,
    auth_settings: Callable[..., None],
    dev_keys: DevIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # API Gateway's JWT authorizer checks iss/aud/exp but cannot check azp: the function must
    parties = "https://app.example, https://admin.example"
    auth_settings(issuer=ISSUER, audience=AUDIENCE, authorized_parties=parties)
    claims = {k: v for k, v in {**CLAIMS, "azp": azp}.items() if v is not None}
    with pytest.raises(AuthError) as from_claims:
        identify(apigw_event("GET", "/v1/models", claims=claims), None)

    verifier = Verifier(
        issuer=ISSUER,
        jwks=FakeJwks(dev_keys.jwks()).cache(),
        audience=AUDIENCE,
        authorized_parties=["https://app.example", "https://admin.example"],
    )
    monkeypatch.setattr(resolver, "current_verifier", lambda: verifier)
    extra = {} if azp is None else {"azp": azp}
    bearer = "Bearer " + dev_keys.token("mallory", issuer=ISSUER, audience=AUDIENCE, **extra)
    with pytest.raises(AuthError) as from_bearer:
        identify(None, bearer)
    assert from_claims.value.status == from_bearer.value.status == 401
    assert from_claims.value.description == from_bearer.value.description == description


def test_lambda_claims_with_an_allowed_azp_pass(auth_settings: Callable[..., None]) -> None:
    auth_settings(
        issuer=ISSUER, audience=AUDIENCE, authorized_parties="https://admin.example,https://app.example"
    )
    assert identify(apigw_event("GET", "/v1/models", claims=CLAIMS), None).sub == "user_2abc"

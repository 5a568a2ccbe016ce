"""Bearer-token verification, socket-free: the JWKS is served by an in-process httpx transport."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hflambda.auth import Identity, JwksCache, Verifier, bearer_token
from hflambda.auth.devissuer import DevIssuer
from hflambda.errors import AuthError, AuthUnavailable
from tests.fixtures.auth import APP_ORIGIN, BAD_TOKEN_NAMES, Clock, FakeJwks, bad_tokens, public_jwk

ISSUER = "https://issuer.example"
AUDIENCE = "hflambda-test"


@pytest.fixture
def jwks(dev_keys: DevIssuer) -> FakeJwks:
    return FakeJwks(dev_keys.jwks())


@pytest.fixture
def verifier(jwks: FakeJwks) -> Verifier:
    return Verifier(issuer=ISSUER, jwks=jwks.cache(), audience=AUDIENCE, authorized_parties=[APP_ORIGIN])


def good_token(dev: DevIssuer, **claims: Any) -> str:
    return dev.token("alice", issuer=ISSUER, audience=AUDIENCE, azp=APP_ORIGIN, **claims)


# --- the happy path -----------------------------------------------------------------------


def test_valid_token_gives_identity(verifier: Verifier, dev_keys: DevIssuer) -> None:
    identity = verifier.verify(good_token(dev_keys, plan="pro"))
    assert identity == Identity(sub="alice", claims=identity.claims, source="bearer")
    assert identity.claims["plan"] == "pro"
    assert identity.claims["iss"] == ISSUER


def test_audience_list_containing_ours_is_accepted(verifier: Verifier, dev_keys: DevIssuer) -> None:
    token = dev_keys.token("alice", issuer=ISSUER, audience=None, azp=APP_ORIGIN, aud=["other", AUDIENCE])
    assert verifier.verify(token).sub == "alice"


def test_small_clock_skew_is_tolerated(verifier: Verifier, dev_keys: DevIssuer) -> None:
    now = int(time.time())
    assert verifier.verify(good_token(dev_keys, iat=now + 3, nbf=now + 3)).sub == "alice"


# --- every bad token ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def forged(dev_keys: DevIssuer, attacker_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return bad_tokens(dev_keys, attacker_key, iss=ISSUER, audience=AUDIENCE)


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_token_is_rejected_saying_which_check_failed(
    name: str, forged: dict[str, Any], verifier: Verifier
) -> None:
    case = forged[name]
    with pytest.raises(AuthError) as caught:
        verifier.verify(case.token)
    assert type(caught.value) is AuthError
    assert caught.value.status == 401
    assert caught.value.description == case.description
    # the token (or its signature) never ends up in a message that could be logged
    for part in case.token.split("."):
        if len(part) > 8:
            assert part not in str(caught.value)


def test_token_with_an_audience_is_rejected_when_none_is_configured(
    jwks: FakeJwks, dev_keys: DevIssuer
) -> None:
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache())
    with pytest.raises(AuthError, match="token has an audience but none is configured"):
        verifier.verify(good_token(dev_keys))
    assert verifier.verify(dev_keys.token("alice", issuer=ISSUER, audience=None)).sub == "alice"


def test_azp_is_not_required_without_authorized_parties(jwks: FakeJwks, dev_keys: DevIssuer) -> None:
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache(), audience=AUDIENCE)
    assert verifier.verify(dev_keys.token("alice", issuer=ISSUER, audience=AUDIENCE)).sub == "alice"


def test_oversized_token_is_rejected_before_parsing(verifier: Verifier) -> None:
    with pytest.raises(AuthError, match="token too large"):
        verifier.verify("a" * 20_000 + ".b.c")


# --- JWKS caching and its bounds ----------------------------------------------------------


def test_random_unknown_kids_do_not_refetch_the_jwks(
    jwks: FakeJwks, verifier: Verifier, dev_keys: DevIssuer
) -> None:
    verifier.verify(good_token(dev_keys))
    for _ in range(50):
        token = dev_keys.sign({"iss": ISSUER, "sub": "x"}, headers={"kid": secrets.token_hex(8)})
        with pytest.raises(AuthError, match="unknown kid"):
            verifier.verify(token)
    assert jwks.requests == 1


def test_unknown_kid_refetches_once_the_interval_has_passed(
    dev_keys: DevIssuer, attacker_key: rsa.RSAPrivateKey
) -> None:
    jwks, clock = FakeJwks(dev_keys.jwks()), Clock()
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache(min_refetch_interval=60, clock=clock))
    rotated = "rotated-key"
    claims = {"iss": ISSUER, "sub": "alice", "iat": int(time.time()), "exp": int(time.time()) + 600}
    token = jwt.encode(claims, attacker_key, algorithm="RS256", headers={"kid": rotated})
    with pytest.raises(AuthError, match="unknown kid"):
        verifier.verify(token)
    # the issuer rotates its keys; within the interval we do not look again
    jwks.document = {"keys": [*dev_keys.jwks()["keys"], public_jwk(attacker_key, rotated)]}
    clock.now += 30
    with pytest.raises(AuthError, match="unknown kid"):
        verifier.verify(token)
    assert jwks.requests == 1
    clock.now += 31
    assert verifier.verify(token).sub == "alice"
    assert jwks.requests == 2


def test_keys_expire_after_ttl(jwks: FakeJwks, dev_keys: DevIssuer) -> None:
    clock = Clock()
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache(ttl=300, clock=clock), audience=AUDIENCE)
    token = dev_keys.token("alice", issuer=ISSUER, audience=AUDIENCE)
    verifier.verify(token)
    clock.now += 299
    verifier.verify(token)
    assert jwks.requests == 1
    clock.now += 2
    verifier.verify(token)
    assert jwks.requests == 2


def test_unreachable_jwks_fails_closed_and_backs_off(jwks: FakeJwks, dev_keys: DevIssuer) -> None:
    clock = Clock()
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache(failure_backoff=5, clock=clock), audience=AUDIENCE)
    token = dev_keys.token("alice", issuer=ISSUER, audience=AUDIENCE)
    jwks.fail = httpx.ConnectError("connection refused")
    for _ in range(20):
        with pytest.raises(AuthUnavailable) as caught:
            verifier.verify(token)
        assert caught.value.status == 503
    assert jwks.requests == 1  # the rest were refused without touching the network
    jwks.fail = None
    clock.now += 5
    assert verifier.verify(token).sub == "alice"


def test_expired_keys_are_not_used_when_the_refresh_fails(jwks: FakeJwks, dev_keys: DevIssuer) -> None:
    clock = Clock()
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache(ttl=300, clock=clock), audience=AUDIENCE)
    token = dev_keys.token("alice", issuer=ISSUER, audience=AUDIENCE)
    verifier.verify(token)
    jwks.fail = httpx.ReadTimeout("timed out")
    clock.now += 301
    with pytest.raises(AuthUnavailable):
        verifier.verify(token)


def test_cached_keys_survive_a_failed_refetch_for_an_unknown_kid(jwks: FakeJwks, dev_keys: DevIssuer) -> None:
    clock = Clock()
    verifier = Verifier(
        issuer=ISSUER, jwks=jwks.cache(min_refetch_interval=60, clock=clock), audience=AUDIENCE
    )
    token = dev_keys.token("alice", issuer=ISSUER, audience=AUDIENCE)
    verifier.verify(token)
    jwks.fail = httpx.ConnectError("down")
    clock.now += 61
    with pytest.raises(AuthUnavailable):
        verifier.verify(dev_keys.sign({"sub": "x"}, headers={"kid": "new-kid"}))
    assert verifier.verify(token).sub == "alice"


def _rsa_jwk(bits: int, kid: str) -> dict[str, Any]:
    return public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=bits), kid)


@pytest.mark.parametrize(
    ("status", "document"),
    [
        (500, {"error": "boom"}),
        (200, b"<html>not json</html>"),
        (200, {"no": "keys"}),
        (200, {"keys": []}),
        (200, b"{" + b" " * 300_000 + b"}"),
    ],
    ids=["http-500", "not-json", "not-a-jwks", "empty", "huge"],
)
def test_broken_jwks_fails_closed(status: int, document: Any, dev_keys: DevIssuer) -> None:
    jwks = FakeJwks(document)
    jwks.status = status
    verifier = Verifier(issuer=ISSUER, jwks=jwks.cache(), audience=AUDIENCE)
    with pytest.raises(AuthUnavailable, match="signing keys unavailable"):
        verifier.verify(dev_keys.token("alice", issuer=ISSUER, audience=AUDIENCE))


def test_unusable_jwks_entries_are_skipped(dev_keys: DevIssuer) -> None:
    from hflambda.auth import parse_jwks

    weak = _rsa_jwk(1024, "weak")
    ec_key = json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    )
    good = dev_keys.jwks()["keys"][0]
    keys = parse_jwks(
        {
            "keys": [
                weak,
                {**ec_key, "kid": "ec"},
                {**good, "kid": "enc", "use": "enc"},
                {**good, "kid": "rs512", "alg": "RS512"},
                {**good, "kid": None},
                "junk",
                good,
            ]
        }
    )
    assert list(keys) == [dev_keys.kid]


@pytest.mark.parametrize(
    "url",
    ["http://issuer.example/.well-known/jwks.json", "file:///etc/passwd", "ftp://x/jwks", "https:///jwks"],
)
def test_jwks_url_must_be_https_unless_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        JwksCache(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8001/j", "http://localhost:1/j", "http://[::1]:1/j"])
def test_plain_http_jwks_is_allowed_on_loopback(url: str) -> None:
    assert JwksCache(url).url == url


# --- the Authorization header -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "description"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Bearer ", "missing bearer token"),
        ("Basic YWxpY2U6cHc=", "authorization scheme must be Bearer"),
        ("Token abc", "authorization scheme must be Bearer"),
    ],
)
def test_bad_authorization_header(header: str | None, description: str) -> None:
    with pytest.raises(AuthError) as caught:
        bearer_token(header)
    assert caught.value.description == description


@pytest.mark.parametrize("header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "  Bearer   abc.def.ghi  "])
def test_bearer_token_is_extracted(header: str) -> None:
    assert bearer_token(header) == "abc.def.ghi"


def test_verifier_requires_an_issuer(jwks: FakeJwks) -> None:
    with pytest.raises(ValueError):
        Verifier(issuer="", jwks=jwks.cache())

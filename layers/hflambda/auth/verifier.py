"""Bearer-token verification with PyJWT: RS256 only, keys only from the configured JWKS.

There is deliberately no option that skips a check: the only way to get an ``Identity`` out of
a token is for every check below to pass. Each failure raises ``AuthError`` whose
``description`` names the check (it becomes the ``error_description`` of the 401); no message
ever contains the token or a value taken from it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from hflambda.auth.claims import check_authorized_party
from hflambda.auth.jwks import ALGORITHM, JwksCache
from hflambda.auth.types import Identity
from hflambda.errors import AuthError

__all__ = ["DEFAULT_LEEWAY", "REQUIRED_CLAIMS", "Verifier", "bearer_token"]

REQUIRED_CLAIMS = ("exp", "iat", "iss", "sub")
DEFAULT_LEEWAY = 5.0
# Header parameters that carry or point at a key: a verifier that honoured them would let the
# token choose the key it is checked with.
KEY_HEADERS = ("jwk", "jku", "x5u", "x5c")
# RFC 7515 says a verifier must reject extensions it does not implement; we implement none.
UNSUPPORTED_HEADERS = ("crit", "b64")
# Names we may echo back in a description; anything else a token claims as its alg is not repeated.
KNOWN_ALGORITHMS = frozenset(
    {
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "RS384",
        "RS512",
        "ES256",
        "ES256K",
        "ES384",
        "ES512",
        "PS256",
        "PS384",
        "PS512",
        "EdDSA",
        "Ed25519",
        "Ed448",
    }
)
# Real tokens are 1-2 KB; refuse to base64-decode and parse anything much larger.
MAX_TOKEN_CHARS = 16 * 1024
_TIME_CLAIMS = ("exp", "iat", "nbf")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ``AuthError``."""
    if not authorization or not authorization.strip():
        raise AuthError("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("authorization scheme must be Bearer")
    token = token.strip()
    if not token:
        raise AuthError("missing bearer token")
    return token


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed here rather than by PyJWT so that every header check below runs
    (and is described) the same way whatever PyJWT thinks of the header."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise AuthError("malformed token header") from None
    if not isinstance(header, dict):
        raise AuthError("malformed token header")
    return header


# PyJWT's errors that need no detail from the error itself, in our words. The classes are
# disjoint, except that InvalidSignatureError is a DecodeError: this table is looked at first.
_FIXED_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, f"alg not allowed ({ALGORITHM} only)"),
    (jwt.InvalidIssuedAtError, "invalid iat claim"),
    (jwt.exceptions.InvalidSubjectError, "invalid sub claim"),
    (jwt.exceptions.InvalidJTIError, "invalid jti claim"),
)


def _immature_reason(message: str) -> str:
    """An ``ImmatureSignatureError``: which claim is in the future."""
    if "(iat)" in message:
        return "token issued in the future (iat)"
    if "(nbf)" in message:
        return "token not yet valid (nbf)"
    return "token not yet valid"


def _decode_reason(message: str) -> str:
    """A ``DecodeError``: a time claim that is not a number, or a malformed token."""
    for claim in _TIME_CLAIMS:
        if f"({claim})" in message:
            return f"invalid {claim} claim"
    return "malformed token"


class Verifier:
    """Verifies bearer tokens of one issuer against its JWKS."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks: JwksCache,
        audience: str | None = None,
        authorized_parties: Iterable[str] = (),
        leeway: float = DEFAULT_LEEWAY,
    ) -> None:
        if not issuer:
            raise ValueError("issuer is required")
        self.issuer = issuer
        self.jwks = jwks
        self.audience = audience or None
        self.authorized_parties = frozenset(authorized_parties)
        self.leeway = leeway

    def verify(self, token: str) -> Identity:
        """The identity in ``token`` once signature and every claim check pass; else ``AuthError``.

        ``AuthUnavailable`` (503) when the JWKS cannot be fetched: never unverified claims.
        """
        kid = self._checked_kid(token)
        key = self.jwks.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": [*REQUIRED_CLAIMS, *(["aud"] if self.audience else [])]},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(self._describe(exc)) from None
        self._check_claims(claims)
        return Identity(sub=claims["sub"], claims=claims, source="bearer")

    def _checked_kid(self, token: str) -> str:
        """Header checks, before any key is looked up: returns the ``kid``."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("token too large")
        if token.count(".") != 2:
            raise AuthError("malformed token")
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise AuthError("missing alg")
        if alg.lower() == "none":
            raise AuthError("alg none not allowed")
        if alg != ALGORITHM:
            shown = f"alg {alg} " if alg in KNOWN_ALGORITHMS else "alg "
            raise AuthError(f"{shown}not allowed ({ALGORITHM} only)")
        for name in KEY_HEADERS:
            if name in header:
                raise AuthError(f"key in token header not allowed ({name})")
        for name in UNSUPPORTED_HEADERS:
            if name in header:
                raise AuthError(f"unsupported header ({name})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing kid")
        return kid

    def _describe(self, exc: jwt.InvalidTokenError) -> str:
        """Which check failed, in words we choose (PyJWT messages are not shown)."""
        message = str(exc)
        if isinstance(exc, jwt.ImmatureSignatureError):
            return _immature_reason(message)
        if isinstance(exc, jwt.MissingRequiredClaimError):
            claim = exc.claim if exc.claim in (*REQUIRED_CLAIMS, "aud") else "required"
            return f"missing {claim} claim"
        if isinstance(exc, jwt.InvalidAudienceError):
            return "audience mismatch" if self.audience else "token has an audience but none is configured"
        for kind, reason in _FIXED_REASONS:
            if isinstance(exc, kind):
                return reason
        if isinstance(exc, jwt.DecodeError):
            return _decode_reason(message)
        return "invalid token"

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        """Checks PyJWT leaves out, plus an exact issuer match that does not depend on its version."""
        if claims.get("iss") != self.issuer:
            raise AuthError("wrong issuer")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise AuthError("invalid sub claim")
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError(f"invalid {name} claim")
        check_authorized_party(claims, self.authorized_parties)

"""Who is calling: API Gateway's verified claims in Lambda, else a bearer token we verify.

Two paths and no third. Under Lambda the API Gateway JWT authorizer has verified the token
and put its claims in the event; a request without them did not pass the authorizer, so it
is refused, and the Authorization header is deliberately *not* decoded as a fallback. The
authorizer cannot check ``azp``, so the configured authorized parties are checked on its
claims here, exactly as on a bearer token. Anywhere else the token is verified here against the configured issuer.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hflambda.auth.claims import check_authorized_party
from hflambda.auth.types import Identity
from hflambda.errors import AuthError, AuthNotConfigured, AuthUnavailable
from hflambda.settings import get_settings
from hflambda.telemetry import logger

if TYPE_CHECKING:
    from hflambda.auth.verifier import Verifier

__all__ = ["current_verifier", "identify", "identity_from_event", "reset"]

# The verifier side (PyJWT, cryptography, httpx) is imported on first use: behind API
# Gateway every request carries authorizer claims, so a Lambda cold start never pays for it.


def identify(aws_event: Mapping[str, Any] | None, authorization: str | None) -> Identity:
    """The verified caller of a request.

    ``aws_event`` is the raw API Gateway event under Mangum (``scope["aws.event"]``), None
    elsewhere; ``authorization`` is the Authorization header. Raises ``AuthError`` (401),
    ``AuthNotConfigured`` (401) or ``AuthUnavailable`` (503).
    """
    if aws_event is not None:
        return identity_from_event(aws_event)
    from hflambda.auth.verifier import bearer_token

    verifier = current_verifier()
    return verifier.verify(bearer_token(authorization))


def identity_from_event(event: Mapping[str, Any]) -> Identity:
    """The identity API Gateway's JWT authorizer put in a payload-2.0 event (values are strings).

    ``HFLAMBDA_AUTH_AUTHORIZED_PARTIES`` is enforced here with the bearer path's error.
    """
    claims = _path(event, "requestContext", "authorizer", "jwt", "claims")
    if not isinstance(claims, Mapping) or not claims:
        raise AuthError("no authorizer claims (the request did not pass the API Gateway JWT authorizer)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise AuthError("authorizer claims have no sub")
    # the authorizer checked iss, aud and exp but cannot check azp: that is ours, as for bearers
    check_authorized_party(claims, get_settings().auth_authorized_parties)
    return Identity(sub=sub, claims=dict(claims), source="authorizer")


def current_verifier() -> Verifier:
    """The verifier for the current settings; ``AuthNotConfigured`` without an issuer."""
    settings = get_settings()
    if not settings.auth_issuer or not settings.jwks_url:
        raise AuthNotConfigured()
    return _verifier(
        settings.auth_issuer,
        settings.jwks_url,
        settings.auth_audience or None,
        tuple(settings.auth_authorized_parties),
    )


def reset() -> None:
    """Forget cached verifiers and their keys (tests swap issuers; settings are re-read anyway)."""
    _verifier.cache_clear()


# Keyed on the settings values so that new settings get a new verifier (and JWKS cache) while
# the same settings keep one for the life of the process.
@lru_cache(maxsize=4)
def _verifier(issuer: str, jwks_url: str, audience: str | None, parties: tuple[str, ...]) -> Verifier:
    from hflambda.auth.jwks import JwksCache
    from hflambda.auth.verifier import Verifier

    try:
        jwks = JwksCache(jwks_url)
    except ValueError as exc:
        logger.error("auth is misconfigured; bearer tokens are refused", extra={"reason": str(exc)})
        raise AuthUnavailable("authentication is misconfigured (JWKS URL)") from None
    return Verifier(issuer=issuer, jwks=jwks, audience=audience, authorized_parties=parties)


def _path(data: Mapping[str, Any], *keys: str) -> Any:
    node: Any = data
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node

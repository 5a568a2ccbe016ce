"""Who is calling the predict API, verified: see ``identify``.

In Lambda the API Gateway JWT authorizer verifies tokens and the claims come from the event;
elsewhere ``Verifier`` checks bearer tokens against the configured issuer's JWKS (RS256 only,
``JwksCache`` with a bounded refresh). ``hflambda.auth.devissuer`` is the local issuer
``hflambda dev`` and ``hflambda token`` use. There is no switch that turns verification off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hflambda.auth.resolver import current_verifier, identify, identity_from_event, reset
from hflambda.auth.types import Identity, IdentitySource

if TYPE_CHECKING:
    from hflambda.auth.jwks import JwksCache, parse_jwks
    from hflambda.auth.verifier import REQUIRED_CLAIMS, Verifier, bearer_token

# verifier-side names load on first access (PyJWT, cryptography and httpx stay out of a
# Lambda cold start, where the API Gateway authorizer has already verified the token)
_LAZY = {
    "JwksCache": "hflambda.auth.jwks",
    "parse_jwks": "hflambda.auth.jwks",
    "REQUIRED_CLAIMS": "hflambda.auth.verifier",
    "Verifier": "hflambda.auth.verifier",
    "bearer_token": "hflambda.auth.verifier",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hflambda.auth' has no attribute {name!r}")


__all__ = [
    "REQUIRED_CLAIMS",
    "Identity",
    "IdentitySource",
    "JwksCache",
    "Verifier",
    "bearer_token",
    "current_verifier",
    "identify",
    "identity_from_event",
    "parse_jwks",
    "reset",
]

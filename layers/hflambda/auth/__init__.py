"""Who is calling the predict API, verified: see ``identify``.

In Lambda the API Gateway JWT authorizer verifies tokens and the claims come from the event;
elsewhere ``Verifier`` checks bearer tokens against the configured issuer's JWKS (RS256 only,
``JwksCache`` with a bounded refresh). ``hflambda.auth.devissuer`` is the local issuer
``hflambda dev`` and ``hflambda token`` use. There is no switch that turns verification off.
"""

from __future__ import annotations

from hflambda.auth.jwks import JwksCache, parse_jwks
from hflambda.auth.resolver import current_verifier, identify, identity_from_event, reset
from hflambda.auth.types import Identity, IdentitySource
from hflambda.auth.verifier import REQUIRED_CLAIMS, Verifier, bearer_token

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

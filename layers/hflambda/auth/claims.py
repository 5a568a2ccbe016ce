"""Claim checks both identity paths share (no JWT library: the authorizer path imports this).

API Gateway's JWT authorizer validates ``iss``, ``aud``/``client_id``, ``exp`` and ``nbf``
but cannot check ``azp``; ``check_authorized_party`` is therefore applied to the
authorizer's claims and to verified bearer tokens alike, with the same error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from hflambda.errors import AuthError

__all__ = ["check_authorized_party"]


def check_authorized_party(claims: Mapping[str, Any], parties: Collection[str]) -> None:
    """Refuse a token whose ``azp`` is not one of ``parties`` (no check when none are configured)."""
    if not parties:
        return
    azp = claims.get("azp")
    if not isinstance(azp, str) or not azp:
        raise AuthError("missing azp claim (authorized parties are configured)")
    if azp not in parties:
        raise AuthError("azp not allowed")

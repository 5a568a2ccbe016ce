"""The caller's identity, as the rest of hflambda sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Identity", "IdentitySource"]

IdentitySource = Literal["authorizer", "bearer"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: ``sub`` scopes documents and search; ``claims`` are the verified claims.

    ``source`` says who verified them: API Gateway's JWT authorizer (every claim value is then a
    string) or this process, from a bearer token (claims keep their JSON types).
    """

    sub: str
    claims: dict[str, Any] = field(default_factory=dict)
    source: IdentitySource = "bearer"

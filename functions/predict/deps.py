"""Request dependencies, in one place: the model pool, the registry, the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hflambda.auth import Identity, identify
from hflambda.engines import ModelPool, get_pool
from hflambda.registry import Registry
from hflambda.settings import Settings, get_settings


def pool() -> ModelPool:
    """The process-wide model pool."""
    return get_pool()


def registry(p: Annotated[ModelPool, Depends(pool)]) -> Registry:
    """The registry the pool serves."""
    return p.registry


def settings() -> Settings:
    """Process settings."""
    return get_settings()


def caller(request: Request) -> Identity:
    """The verified caller: API Gateway authorizer claims in Lambda, else a bearer token."""
    return identify(request.scope.get("aws.event"), request.headers.get("authorization"))


Pool = Annotated[ModelPool, Depends(pool)]
RegistryDep = Annotated[Registry, Depends(registry)]
SettingsDep = Annotated[Settings, Depends(settings)]
Caller = Annotated[Identity, Depends(caller)]

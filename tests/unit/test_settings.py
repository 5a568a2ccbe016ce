"""Settings: one class, HFLAMBDA_ prefix, comma lists, derived JWKS URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from hflambda.settings import Settings, env_name


def test_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFLAMBDA_MODEL_STORE", "/mnt/models")
    monkeypatch.setenv("HFLAMBDA_AUTH_AUTHORIZED_PARTIES", "https://a.example, https://b.example,")
    monkeypatch.setenv("HFLAMBDA_AUTH_ISSUER", "https://clerk.example.com/")
    settings = Settings()
    assert settings.model_store == Path("/mnt/models")
    assert settings.auth_authorized_parties == ["https://a.example", "https://b.example"]
    assert settings.jwks_url == "https://clerk.example.com/.well-known/jwks.json"
    assert Settings(auth_jwks_url="https://keys.example/jwks").jwks_url == "https://keys.example/jwks"


def test_env_name_rejects_unknown_fields() -> None:
    assert env_name("vector_uri") == "HFLAMBDA_VECTOR_URI"
    with pytest.raises(KeyError):
        env_name("no_such_setting")

"""Signing keys from a JWKS URL, cached in process with a bounded refresh.

Why not ``jwt.PyJWKClient``: it bounds refetches on an unknown ``kid`` (``cooldown_duration``)
but not after a *failed* fetch, so while the JWKS is down every request would try the network
again (each holding the client lock for the whole timeout); it also keeps keys without an
``alg`` restriction and of any size. This cache is small enough to own:

- keys are fetched once and kept ``ttl`` seconds;
- an unknown ``kid`` triggers a refetch only if none was attempted in the last
  ``min_refetch_interval`` seconds, so random kids cannot turn requests into JWKS fetches;
- a failed fetch is not retried for ``failure_backoff`` seconds; meanwhile, and whenever the
  keys are missing or expired, verification fails closed with ``AuthUnavailable`` (503);
- only RSA signing keys with a ``kid``, usable for RS256 and at least 2048 bits, are kept.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from hflambda.errors import AuthError, AuthUnavailable
from hflambda.telemetry import logger

__all__ = ["JwksCache", "parse_jwks"]

ALGORITHM = "RS256"
MIN_RSA_BITS = 2048
# A real JWKS is a few KB; anything this big is not one, and we will not buffer it.
MAX_JWKS_BYTES = 256 * 1024


class _FetchFailed(Exception):
    """Why a JWKS fetch produced no keys (logged, never shown to the caller)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return  # the dev issuer and tests serve on loopback
    raise ValueError(f"JWKS URL must be https (plain http only on loopback), got {url!r}")


def parse_jwks(document: Any) -> dict[str, RSAPublicKey]:
    """The RS256 signing keys of a JWKS document, by ``kid``; unusable entries are skipped.

    Raises ``ValueError`` when the document is not a JWKS or holds no usable key.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str, RSAPublicKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping):
            continue
        kid = entry.get("kid")
        if entry.get("kty") != "RSA" or not isinstance(kid, str) or not kid:
            continue
        if entry.get("use") not in (None, "sig") or entry.get("alg") not in (None, ALGORITHM):
            continue
        try:
            key = PyJWK(dict(entry), algorithm=ALGORITHM).key
        except (PyJWKError, ValueError, TypeError):
            continue
        if isinstance(key, RSAPrivateKey):  # a JWKS that leaks private parts; we need only the public half
            key = key.public_key()
        if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            continue
        keys[kid] = key
    if not keys:
        raise ValueError("JWKS holds no usable RS256 signing key")
    return keys


class JwksCache:
    """The signing keys published at ``url``; see the module docstring for the refresh rules."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        min_refetch_interval: float = 60.0,
        failure_backoff: float = 5.0,
        timeout: float = 3.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_url(url)
        self.url = url
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        self.failure_backoff = failure_backoff
        self.timeout = timeout
        self.fetches = 0
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, RSAPublicKey] | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._last_failure: float | None = None

    def key(self, kid: str) -> RSAPublicKey:
        """The public key for ``kid``.

        Raises ``AuthError("unknown kid")`` when the JWKS does not list it, and
        ``AuthUnavailable`` when the keys cannot be fetched.
        """
        with self._lock:
            now = self._clock()
            keys = self._keys
            if keys is None or now - self._fetched_at >= self.ttl:
                keys = self._refresh(now)
            found = keys.get(kid)
            if found is None and self._may_refetch(now):
                # the issuer may have rotated keys since our last fetch
                found = self._refresh(now).get(kid)
            if found is None:
                raise AuthError("unknown kid")
            return found

    def _may_refetch(self, now: float) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.min_refetch_interval

    def _refresh(self, now: float) -> dict[str, RSAPublicKey]:
        if self._last_failure is not None and now - self._last_failure < self.failure_backoff:
            raise AuthUnavailable("signing keys unavailable (JWKS fetch failed; retrying shortly)")
        self._last_attempt = now
        self.fetches += 1
        try:
            keys = parse_jwks(self._fetch())
        except (_FetchFailed, ValueError) as exc:
            self._last_failure = now
            logger.warning(
                "JWKS fetch failed; bearer tokens are refused until it succeeds",
                extra={"jwks_url": self.url, "reason": str(exc)},
            )
            raise AuthUnavailable("signing keys unavailable (JWKS fetch failed)") from None
        self._keys = keys
        self._fetched_at = now
        self._last_failure = None
        return keys

    def _fetch(self) -> Any:
        if self._client is not None:
            return self._get(self._client)
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            return self._get(client)

    def _get(self, client: httpx.Client) -> Any:
        body = bytearray()
        try:
            with client.stream(
                "GET", self.url, headers={"Accept": "application/json"}, timeout=self.timeout
            ) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise _FetchFailed(f"response larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"{type(exc).__name__}: {exc}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise _FetchFailed("response is not JSON") from None

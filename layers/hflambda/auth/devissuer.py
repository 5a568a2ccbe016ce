"""A local token issuer for development and tests: an RSA key, its JWKS, and signed tokens.

``hflambda dev`` starts one (``DevIssuer(key_dir).serve()``) and points
``HFLAMBDA_AUTH_ISSUER`` / ``HFLAMBDA_AUTH_AUDIENCE`` at ``.issuer`` / ``.audience``, so the
app verifies dev tokens through exactly the code that verifies Clerk tokens.

Files in ``key_dir`` (default ``.hflambda/dev-issuer/``, directory mode 0700):

- ``signing-key.pem`` — the RSA-2048 private key, created once (mode 0600) and reused, so
  tokens stay valid across restarts; its ``kid`` is the RFC 7638 thumbprint of the public key.
- ``issuer.json`` — ``{"issuer", "audience", "jwks_uri", "kid"}`` of the last ``start()``.

How ``hflambda token`` finds the issuer: a token's ``iss`` must equal the URL the running dev
issuer serves at, and that URL contains the port, which ``start(port=0)`` picks at random.
So ``start()`` records its URL and audience in ``issuer.json`` and ``hflambda token`` reads
them (``--issuer`` / ``--audience`` override). A token minted for one run stays valid in the
next only if the issuer URL is the same, i.e. if ``hflambda dev`` serves on a fixed port.

This is a development tool: the key is a local file and anybody who can read it can mint
tokens, so never point a deployed function at a dev issuer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import EllipsisType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "DEFAULT_KEY_DIR",
    "DEV_AUDIENCE",
    "JWKS_PATH",
    "OPENID_CONFIGURATION_PATH",
    "DevIssuer",
]

DEFAULT_KEY_DIR = Path(".hflambda/dev-issuer")
DEV_AUDIENCE = "hflambda-dev"
JWKS_PATH = "/.well-known/jwks.json"
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
KEY_FILE = "signing-key.pem"
ISSUER_FILE = "issuer.json"
ALGORITHM = "RS256"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` atomically and mode 0600; FileExistsError if it exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp opens 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # link, not rename: two processes creating the key at once must end up sharing one
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


class DevIssuer:
    """A local issuer: a persisted RSA key, its JWKS, tokens signed with it, and a tiny HTTP server."""

    def __init__(self, key_dir: Path = DEFAULT_KEY_DIR, *, audience: str | None = DEV_AUDIENCE) -> None:
        self.key_dir = Path(key_dir)
        self.audience = audience
        self.jwks_requests = 0
        self._private_key = self._load_or_create_key()
        public = self._private_key.public_key().public_numbers()
        self._public_jwk = {"kty": "RSA", "e": _int_b64url(public.e), "n": _int_b64url(public.n)}
        # RFC 7638: sha256 of the required members in lexicographic order, no whitespace
        thumbprint = json.dumps(self._public_jwk, sort_keys=True, separators=(",", ":")).encode()
        self.kid = _b64url(hashlib.sha256(thumbprint).digest())
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._count_lock = threading.Lock()

    # --- keys and tokens ----------------------------------------------------------------

    def _load_or_create_key(self) -> rsa.RSAPrivateKey:
        self.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.key_dir / KEY_FILE
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            with contextlib.suppress(FileExistsError):  # someone else created it first: use theirs
                _write_private(path, pem)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return loaded

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (one RS256 signing key)."""
        return {"keys": [{**self._public_jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        """The signing key (for tests that need to forge variations of a token)."""
        return self._private_key

    @property
    def issuer(self) -> str | None:
        """The URL this issuer serves at; when not serving, the one recorded by the last ``start()``."""
        if self._url is not None:
            return self._url
        record = self.recorded(self.key_dir)
        return record["issuer"] if record else None

    def sign(self, payload: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        """``payload`` signed RS256 with this key, ``kid`` in the header (``headers`` add or override)."""
        return jwt.encode(
            payload, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid, **(headers or {})}
        )

    def token(
        self,
        sub: str,
        *,
        ttl: int = 3600,
        audience: str | EllipsisType | None = ...,
        azp: str | None = None,
        issuer: str | None = None,
        **claims: Any,
    ) -> str:
        """A token for ``sub`` valid ``ttl`` seconds.

        ``audience`` defaults to this issuer's audience (None: no ``aud``); ``issuer`` to
        ``self.issuer``. Extra ``claims`` are added last, so they may override standard ones.
        """
        iss = issuer or self.issuer
        if not iss:
            raise RuntimeError(
                f"no issuer URL: start this DevIssuer (or `hflambda dev`), or pass issuer=; "
                f"nothing recorded in {self.key_dir / ISSUER_FILE}"
            )
        aud = self.audience if isinstance(audience, EllipsisType) else audience
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": iss,
            "sub": sub,
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(8),
        }
        if aud:
            payload["aud"] = aud
        if azp:
            payload["azp"] = azp
        payload.update(claims)
        return self.sign(payload)

    # --- discovery ----------------------------------------------------------------------

    @staticmethod
    def recorded(key_dir: Path = DEFAULT_KEY_DIR) -> dict[str, str] | None:
        """What the last ``start()`` with this ``key_dir`` recorded in ``issuer.json``, if anything.

        Keys: ``issuer``, ``audience`` ("" for none), ``jwks_uri``, ``kid``.
        """
        path = Path(key_dir) / ISSUER_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("issuer"), str):
            return None
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def openid_configuration(self) -> dict[str, Any]:
        """The discovery document (the parts a JWT verifier reads)."""
        iss = self.issuer or ""
        return {
            "issuer": iss,
            "jwks_uri": iss + JWKS_PATH,
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        }

    # --- serving ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the JWKS and discovery document on a daemon thread; return the issuer URL."""
        if self._server is not None:
            raise RuntimeError(f"already serving at {self._url}")
        server = ThreadingHTTPServer((host, port), _handler_for(self))
        server.daemon_threads = True
        bound_port = server.server_address[1]
        url_host = f"[{host}]" if ":" in host else host
        self._server = server
        self._url = f"http://{url_host}:{bound_port}"
        self._thread = threading.Thread(target=server.serve_forever, name="hflambda-dev-issuer", daemon=True)
        self._thread.start()
        self._record(self._url)
        return self._url

    def stop(self) -> None:
        """Stop serving (``issuer.json`` stays: tokens name the URL, not the process)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._url = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[DevIssuer]:
        """``start()`` for the duration of a ``with`` block, then ``stop()``."""
        self.start(host, port)
        try:
            yield self
        finally:
            self.stop()

    def _record(self, url: str) -> None:
        record = {
            "issuer": url,
            "audience": self.audience or "",
            "jwks_uri": url + JWKS_PATH,
            "kid": self.kid,
        }
        path = self.key_dir / ISSUER_FILE
        fd, tmp = tempfile.mkstemp(dir=self.key_dir, prefix=f".{ISSUER_FILE}.")
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2)
        os.replace(tmp, path)

    def _count_jwks_request(self) -> None:
        with self._count_lock:
            self.jwks_requests += 1


def _handler_for(issuer: DevIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hflambda-dev-issuer"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == JWKS_PATH:
                issuer._count_jwks_request()
                self._json(issuer.jwks())
            elif path == OPENID_CONFIGURATION_PATH:
                self._json(issuer.openid_configuration())
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _json(self, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=300")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the dev console for the app's own logs

    return Handler

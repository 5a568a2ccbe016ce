"""The HTTP API front door, built from the template's ``AWS::ApiGatewayV2`` resources and
behaving as API Gateway documents HTTP APIs:

- **Stages**: ``$default`` serves at ``/``; a named stage serves under ``/{stage}`` (its name
  stays in ``rawPath``, as in AWS). Stage throttling (rate/burst) answers 429.
- **Routes**: the most specific match wins (a full match of method and path, then a path
  with a greedy ``{proxy+}``, then ``$default``); a specific method beats ``ANY``. No match:
  404 ``{"message":"Not Found"}``.
- **CORS** (``CorsConfiguration``): a preflight (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) that matches *no route* is answered by the gateway
  itself (204, the configured headers). A route that matches ``OPTIONS`` (``ANY /{proxy+}``
  does) gets the preflight instead, through its authorizer: with a JWT authorizer that is a
  401, as it is in AWS. Integration responses to CORS requests get the configured headers
  (the backend's own CORS headers are dropped).
- **JWT authorizer**: the identity source header must be present (``Bearer`` prefix
  removed); the token must be an RS256 JWT whose ``kid`` is in the issuer's JWKS (from its
  OpenID discovery document), ``iss`` equal to the issuer, ``aud`` (or ``client_id`` when
  there is no ``aud``) in the audience list, ``exp`` in the future, ``nbf``/``iat`` not in
  the future, and the route's scopes in ``scope``/``scp``. Otherwise 401
  ``{"message":"Unauthorized"}`` with a ``www-authenticate`` header saying why.
- **Payload format 2.0** to the Lambda integration, claims as strings in
  ``requestContext.authorizer.jwt.claims``.
- **Limits**: a request body over 10 MB is refused (413) before any integration runs; an
  integration that takes longer than its timeout (at most 30 s) gets 503
  ``{"message":"Service Unavailable"}`` (the function keeps running, as in AWS); a Lambda
  function error or a response over Lambda's 6 MB gets 500 ``{"message":"Internal Server
  Error"}``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt

from rehearsal.functions import RESPONSE_LIMIT_BYTES, Invocation
from rehearsal.template import ACCOUNT, ApiSpec, JwtAuthorizer, Route

__all__ = ["REQUEST_LIMIT_BYTES", "FrontDoor", "JwksCache", "claims_as_strings", "select_route"]

REQUEST_LIMIT_BYTES = 10 * 1024 * 1024  # HTTP API payload limit
MAX_INTEGRATION_TIMEOUT_MS = 30_000
API_ID = "rehearsal"
TEXT_TYPES = re.compile(
    r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded)|.*\+json|.*\+xml)", re.I
)

Invoker = Callable[[Route, dict[str, Any], float], Invocation]


def gateway_error(status: int, message: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json", **headers}, json.dumps({"message": message}).encode()


# --- routes -------------------------------------------------------------------------------------


def _path_matches(template: str, path: str) -> tuple[bool, dict[str, str], int]:
    """(matches, path parameters, rank): rank 2 full match, 1 greedy match."""
    t_parts = template.strip("/").split("/") if template.strip("/") else []
    p_parts = path.strip("/").split("/") if path.strip("/") else []
    params: dict[str, str] = {}
    for index, part in enumerate(t_parts):
        if part.startswith("{") and part.endswith("+}"):
            rest = p_parts[index:]
            if not rest:
                return False, {}, 0
            params[part[1:-2]] = "/".join(rest)
            return True, params, 1
        if index >= len(p_parts):
            return False, {}, 0
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = p_parts[index]
        elif part != p_parts[index]:
            return False, {}, 0
    return len(t_parts) == len(p_parts), params, 2


def select_route(routes: tuple[Route, ...], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """API Gateway's route selection for an HTTP API."""
    best: tuple[tuple[int, int, int], Route, dict[str, str]] | None = None
    default = None
    for route in routes:
        if not route.path:
            default = route
            continue
        if route.method not in (method, "ANY"):
            continue
        ok, params, rank = _path_matches(route.path, path)
        if not ok:
            continue
        literal = sum(1 for p in route.path.split("/") if p and not p.startswith("{"))
        score = (rank, literal, 1 if route.method == method else 0)
        if best is None or score > best[0]:
            best = (score, route, params)
    if best is not None:
        return best[1], best[2]
    if default is not None:
        return default, {}
    return None


# --- JWT ----------------------------------------------------------------------------------------


class JwksCache:
    """Signing keys of each issuer, from its OpenID discovery document (as API Gateway fetches them)."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched: dict[str, float] = {}
        self._lock = threading.Lock()

    def key(self, issuer: str, kid: str) -> Any:
        with self._lock:
            keys = self._keys.get(issuer)
            stale = time.monotonic() - self._fetched.get(issuer, 0.0) > 60
            if keys is None or (kid not in keys and stale):
                keys = self._fetch(issuer)
                self._keys[issuer] = keys
                self._fetched[issuer] = time.monotonic()
        if kid not in keys:
            raise jwt.InvalidTokenError(f"signing key {kid!r} is not in the issuer's JWKS")
        return keys[kid]

    @staticmethod
    def _fetch(issuer: str) -> dict[str, Any]:
        discovery = httpx.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=5).json()
        document = httpx.get(discovery["jwks_uri"], timeout=5).json()
        keys = {}
        for jwk in document.get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("kid"):
                keys[jwk["kid"]] = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        return keys


class Unauthorized(Exception):
    pass


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_string(v)}" for k, v in value.items()) + "]"
    return str(value)


def claims_as_strings(claims: dict[str, Any]) -> dict[str, str]:
    """Claims as payload 2.0 carries them: every value a string (numbers, booleans, arrays too)."""
    return {key: _string(value) for key, value in claims.items()}


def authorize(
    authorizer: JwtAuthorizer, route: Route, headers: dict[str, str], jwks: JwksCache
) -> dict[str, Any]:
    """The verified claims, or Unauthorized with API Gateway's error description."""
    values = []
    for source in authorizer.identity_source:
        if not source.startswith("$request.header."):
            raise Unauthorized(f"identity source {source} is not rehearsed")
        value = headers.get(source.removeprefix("$request.header.").lower())
        if not value:
            raise Unauthorized("")  # missing identity: plain 401, no description
        values.append(value)
    token = values[0]
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthorized("the token is not a valid JWT") from None
    if header.get("alg") != "RS256":
        raise Unauthorized(f"unsupported signing algorithm {header.get('alg')!r}")
    try:
        key = jwks.key(authorizer.issuer, str(header.get("kid", "")))
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_iss": False, "require": ["exp"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("the token is not valid yet") from None
    except (jwt.InvalidTokenError, httpx.HTTPError, ValueError, KeyError) as exc:
        raise Unauthorized(f"the token is invalid: {exc}") from None
    if claims.get("iss") != authorizer.issuer:
        raise Unauthorized("the token does not have a valid issuer")
    audience = claims.get("aud")
    if audience is None:
        audience = claims.get("client_id")
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(a in authorizer.audience for a in audiences if a is not None):
        raise Unauthorized("the token does not have a valid audience")
    if route.scopes:
        granted = set(str(claims.get("scope") or claims.get("scp") or "").replace(",", " ").split())
        if not granted & set(route.scopes):
            raise Unauthorized("the token does not have the required scopes")
    return claims


# --- the server ---------------------------------------------------------------------------------


@dataclass
class AccessRecord:
    request_id: str
    method: str
    path: str
    route_key: str
    status: int
    integration_error: str | None
    authorizer_error: str | None
    latency_ms: int
    response_length: int


@dataclass
class FrontDoor:
    """The HTTP API on 127.0.0.1; ``url`` is the stage's invoke URL."""

    api: ApiSpec
    invoker: Invoker
    host: str = "127.0.0.1"
    port: int = 0
    stage: str | None = None  # which of the API's stages to serve (default: the first)
    access_log: Path | None = None
    jwks: JwksCache = field(default_factory=JwksCache)
    records: list[AccessRecord] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _tokens: float = 0.0
    _refilled: float = 0.0
    _throttle_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def stage_spec(self) -> Any:
        for stage in self.api.stages:
            if self.stage is None or stage.name == self.stage:
                return stage
        raise ValueError(f"the API has no stage {self.stage!r}")

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        base = f"http://{self.host}:{self._server.server_address[1]}"
        name = self.stage_spec.name
        return base if name == "$default" else f"{base}/{name}"

    def start(self) -> FrontDoor:
        door = self
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="frontdoor-integration"
        )
        burst = self.stage_spec.throttle_burst
        self._tokens = float(burst) if burst else 0.0
        self._refilled = time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "rehearsal-apigateway"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                door._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _any

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="frontdoor", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # --- one request -------------------------------------------------------------------------

    def _throttled(self) -> bool:
        stage = self.stage_spec
        if not stage.throttle_rate and not stage.throttle_burst:
            return False
        with self._throttle_lock:
            now = time.monotonic()
            burst = float(stage.throttle_burst or stage.throttle_rate or 1)
            self._tokens = min(burst, self._tokens + (now - self._refilled) * float(stage.throttle_rate or 0))
            self._refilled = now
            if self._tokens < 1:
                return True
            self._tokens -= 1
            return False

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        request_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:9]).decode()
        method = request.command
        split = urlsplit(request.path)
        path = split.path or "/"
        headers = {k.lower(): v for k, v in request.headers.items()}
        route_key, integration_error, authorizer_error = "-", None, None

        length = int(headers.get("content-length") or 0)
        if length > REQUEST_LIMIT_BYTES:
            status, out_headers, body = gateway_error(413, "Request Entity Too Large")
            self._log(
                request_id,
                method,
                path,
                route_key,
                status,
                "request body over 10 MB",
                None,
                started,
                len(body),
            )
            self._reply(request, status, out_headers, body, request_id, close=True)
            return
        raw_body = request.rfile.read(length) if length else b""

        status, out_headers, body = self._respond(method, path, split.query, headers, raw_body, request_id)
        route_key = out_headers.pop("x-rehearsal-route", "-")
        integration_error = out_headers.pop("x-rehearsal-integration-error", None)
        authorizer_error = out_headers.pop("x-rehearsal-authorizer-error", None)
        self._log(
            request_id,
            method,
            path,
            route_key,
            status,
            integration_error,
            authorizer_error,
            started,
            len(body),
        )
        self._reply(request, status, out_headers, b"" if method == "HEAD" else body, request_id)

    def _respond(
        self, method: str, path: str, query: str, headers: dict[str, str], raw_body: bytes, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        stage = self.stage_spec.name
        route_path = path
        if stage != "$default":
            prefix = f"/{stage}"
            if not (path == prefix or path.startswith(prefix + "/")):
                return gateway_error(404, "Not Found")
            route_path = path[len(prefix) :] or "/"
        if self._throttled():
            return gateway_error(429, "Too Many Requests")
        cors = self.api.cors
        origin = headers.get("origin")
        preflight = method == "OPTIONS" and origin is not None and "access-control-request-method" in headers
        selected = select_route(self.api.routes, method, route_path)
        if selected is None:
            if cors is not None and preflight:
                return self._preflight(headers)
            return gateway_error(404, "Not Found")
        route, path_params = selected
        claims: dict[str, Any] | None = None
        if route.authorization == "JWT":
            assert route.authorizer is not None
            try:
                claims = authorize(route.authorizer, route, headers, self.jwks)
            except Unauthorized as exc:
                description = str(exc)
                extra = (
                    {
                        "www-authenticate": f'Bearer scope="" error="invalid_token" error_description="{description}"'
                    }
                    if description
                    else {}
                )
                status, out, body = gateway_error(401, "Unauthorized", **extra)
                out["x-rehearsal-route"] = route.key
                out["x-rehearsal-authorizer-error"] = description or "missing identity source"
                return status, out, body
        event = self._event(
            route, path_params, method, path, query, headers, raw_body, request_id, claims, stage
        )
        timeout = min(route.timeout_ms, MAX_INTEGRATION_TIMEOUT_MS) / 1000.0
        assert self._pool is not None
        future = self._pool.submit(self.invoker, route, event, timeout)
        try:
            result = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            status, out, body = gateway_error(503, "Service Unavailable")
            out.update(
                {
                    "x-rehearsal-route": route.key,
                    "x-rehearsal-integration-error": f"integration timed out after {timeout:g} s",
                }
            )
            return status, out, body
        except Exception as exc:
            status, out, body = gateway_error(500, "Internal Server Error")
            out.update(
                {
                    "x-rehearsal-route": route.key,
                    "x-rehearsal-integration-error": f"{type(exc).__name__}: {exc}",
                }
            )
            return status, out, body
        status, out, body = self._integration_response(result)
        if cors is not None and origin is not None:
            out = {k: v for k, v in out.items() if not k.lower().startswith("access-control-")}
            out.update(self._cors_headers(origin, preflight=False))
        out["x-rehearsal-route"] = route.key
        return status, out, body

    def _integration_response(self, result: Invocation) -> tuple[int, dict[str, str], bytes]:
        if result.function_error or len(result.payload) > RESPONSE_LIMIT_BYTES:
            status, out, body = gateway_error(500, "Internal Server Error")
            reason = result.function_error or "Function.ResponseSizeTooLarge"
            if len(result.payload) > RESPONSE_LIMIT_BYTES:
                reason = (
                    f"Function.ResponseSizeTooLarge: {len(result.payload)} bytes > {RESPONSE_LIMIT_BYTES}"
                )
            out["x-rehearsal-integration-error"] = reason
            return status, out, body
        try:
            document = result.json()
        except ValueError:
            document = result.payload.decode("utf-8", "replace")
        if isinstance(document, dict) and "statusCode" in document:
            try:
                status = int(document["statusCode"])
            except (TypeError, ValueError):
                status, out, body = gateway_error(500, "Internal Server Error")
                out["x-rehearsal-integration-error"] = "malformed Lambda proxy response"
                return status, out, body
            out_headers = {str(k).lower(): str(v) for k, v in (document.get("headers") or {}).items()}
            cookies = document.get("cookies") or []
            if cookies:
                out_headers["set-cookie"] = "\n".join(cookies)
            raw = document.get("body") or ""
            body = base64.b64decode(raw) if document.get("isBase64Encoded") else str(raw).encode()
            return status, out_headers, body
        # no statusCode: API Gateway infers 200 and a JSON body
        text = document if isinstance(document, str) else json.dumps(document)
        return 200, {"content-type": "application/json"}, text.encode()

    def _cors_headers(
        self, origin: str, *, preflight: bool, request_headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        cors = self.api.cors
        assert cors is not None
        allowed = _origin_allowed(origin, cors.allow_origins)
        if not allowed:
            return {}
        out = {
            "access-control-allow-origin": "*"
            if "*" in cors.allow_origins and not cors.allow_credentials
            else origin
        }
        if cors.allow_credentials:
            out["access-control-allow-credentials"] = "true"
        if cors.expose_headers and not preflight:
            out["access-control-expose-headers"] = ",".join(cors.expose_headers)
        if preflight:
            requested = (request_headers or {}).get("access-control-request-method", "")
            methods = cors.allow_methods
            out["access-control-allow-methods"] = requested if "*" in methods else ",".join(methods)
            asked = (request_headers or {}).get("access-control-request-headers", "")
            if "*" in cors.allow_headers:
                out["access-control-allow-headers"] = asked
            elif cors.allow_headers:
                out["access-control-allow-headers"] = ",".join(cors.allow_headers)
            if cors.max_age is not None:
                out["access-control-max-age"] = str(cors.max_age)
        return out

    def _preflight(self, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        origin = headers["origin"]
        out = self._cors_headers(origin, preflight=True, request_headers=headers)
        out["x-rehearsal-route"] = "CORS preflight (API Gateway)"
        return 204, out, b""

    def _event(
        self,
        route: Route,
        path_params: dict[str, str],
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        raw_body: bytes,
        request_id: str,
        claims: dict[str, Any] | None,
        stage: str,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        out_headers = {k: v for k, v in headers.items() if k != "cookie"}
        cookies = [c.strip() for c in headers.get("cookie", "").split(";") if c.strip()]
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(key, []).append(value)
        content_type = headers.get("content-type", "")
        text = not raw_body or TEXT_TYPES.match(content_type) is not None
        event: dict[str, Any] = {
            "version": route.payload_version,
            "routeKey": route.key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": out_headers,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": API_ID,
                "domainName": headers.get("host", f"{self.host}"),
                "domainPrefix": headers.get("host", self.host).split(".")[0],
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": request_id,
                "routeKey": route.key,
                "stage": stage,
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": not text,
        }
        if cookies:
            event["cookies"] = cookies
        if params:
            event["queryStringParameters"] = {k: ",".join(v) for k, v in params.items()}
        if path_params:
            event["pathParameters"] = path_params
        if raw_body:
            event["body"] = raw_body.decode("utf-8") if text else base64.b64encode(raw_body).decode()
        if claims is not None:
            event["requestContext"]["authorizer"] = {
                "jwt": {"claims": claims_as_strings(claims), "scopes": list(route.scopes) or None}
            }
        return event

    def _reply(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        body: bytes,
        request_id: str,
        *,
        close: bool = False,
    ) -> None:
        try:
            request.send_response(status)
            for key, value in headers.items():
                if key == "set-cookie":
                    for cookie in value.split("\n"):
                        request.send_header("set-cookie", cookie)
                elif key not in ("content-length", "connection", "transfer-encoding"):
                    request.send_header(key, value)
            request.send_header("apigw-requestid", request_id)
            request.send_header("content-length", str(len(body)))
            if close:
                request.send_header("connection", "close")
                request.close_connection = True
            request.end_headers()
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _log(
        self,
        request_id: str,
        method: str,
        path: str,
        route_key: str,
        status: int,
        integration_error: str | None,
        authorizer_error: str | None,
        started: float,
        length: int,
    ) -> None:
        record = AccessRecord(
            request_id,
            method,
            path,
            route_key,
            status,
            integration_error,
            authorizer_error,
            int((time.monotonic() - started) * 1000),
            length,
        )
        self.records.append(record)
        if self.access_log is not None:
            with self.access_log.open("a") as handle:
                handle.write(json.dumps(record.__dict__) + "\n")


def _origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        if pattern == "*" or pattern == origin:
            return True
        if pattern.endswith("://*") and origin.startswith(pattern[:-1]):
            return True
    return False

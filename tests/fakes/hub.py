"""A fake Hugging Face Hub: a threaded HTTP server on 127.0.0.1 speaking enough of the Hub
protocol for huggingface_hub 0.36's ``snapshot_download`` and ``HfApi.model_info``.

What it serves (read from huggingface_hub's file_download.py / hf_api.py / utils/_http.py):

- ``GET /api/models/{repo}/revision/{rev}[?blobs=true]`` → ``{"id", "sha", "siblings": [...]}``;
  with ``blobs`` each sibling has ``size``, ``blobId`` and, for LFS files, ``lfs: {size, sha256,
  pointerSize}``.
- ``HEAD /{repo}/resolve/{rev}/{file}`` → regular file: 200 with ``ETag`` (git blob sha1),
  ``Content-Length``, ``X-Repo-Commit``; LFS file: 302 to ``/cdn/...`` with ``X-Linked-Etag``
  (sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, like the real Hub's CDN redirect.
- ``GET`` of the same, and of the ``/cdn/...`` location, with ``Range`` support (206), so
  huggingface_hub's resume of an ``.incomplete`` file works.
- errors the way ``hf_raise_for_status`` reads them: ``X-Error-Code`` (``RepoNotFound``,
  ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``) and ``X-Error-Message`` (``Invalid
  credentials in Authorization header`` for a token it does not know).

Faults are queued with ``inject``: a status (429 with ``Retry-After`` / ``RateLimit``, 500,
401, 403, 404 ...), a connection reset in the middle of a body, a truncated body (a short but
self-consistent response), a corrupted body (right size, wrong bytes) or a delay. Every
request is recorded, so tests can count what reached the "Hub".
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".msgpack", ".h5", ".pt", ".ckpt")
LFS_MIN_SIZE = 10 * 1024 * 1024
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class RepoFile:
    """One file of one commit."""

    name: str
    path: Path
    size: int
    sha256: str
    blob_id: str
    lfs: bool

    def read(self) -> bytes:
        return self.path.read_bytes()


def describe_file(name: str, path: Path) -> RepoFile:
    data = path.read_bytes()
    blob = hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()
    lfs = name.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE
    return RepoFile(
        name=name, path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), blob_id=blob, lfs=lfs
    )


@dataclass
class FakeRepo:
    """A model repo: commits (sha → files), a main branch, access rules."""

    repo_id: str
    commits: dict[str, dict[str, RepoFile]] = field(default_factory=dict)
    main: str | None = None
    private: bool = False
    gated: bool = False
    accepted_tokens: set[str] = field(default_factory=set)


@dataclass
class Fault:
    """One queued misbehaviour. ``route``: info | head | get (resolve GET and CDN GET) | any."""

    kind: str  # status | reset | truncate | corrupt | delay
    route: str = "any"
    file: str | None = None  # glob on the repo file name (head/get)
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    skip: int = 0  # let this many matching requests through first
    fired: int = 0
    passed: int = 0

    def matches(self, route: str, file: str | None) -> bool:
        if self.route not in ("any", route):
            return False
        return not (self.file is not None and (file is None or not fnmatch.fnmatch(file, self.file)))


@dataclass(frozen=True)
class Seen:
    """One request as the fake Hub saw it."""

    method: str
    route: str
    repo: str | None
    file: str | None
    status: int
    authorized: bool


class FakeHub:
    """The server plus its repos, faults and request log (thread-safe)."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.valid_tokens: set[str] = set()
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._cdn: dict[str, tuple[str, str, str]] = {}  # cdn key -> (repo, commit, file)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content -------------------------------------------------------------------------

    def add_commit(
        self,
        repo_id: str,
        folder: Path,
        *,
        sha: str | None = None,
        private: bool = False,
        gated: bool = False,
    ) -> str:
        """Publish every file under ``folder`` as a commit of ``repo_id`` (made main); its sha."""
        files = {
            p.relative_to(folder).as_posix(): describe_file(p.relative_to(folder).as_posix(), p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(folder).parts
        }
        if sha is None:
            digest = hashlib.sha1(usedforsecurity=False)
            for name, f in sorted(files.items()):
                digest.update(f"{repo_id}:{name}:{f.sha256}\n".encode())
            sha = digest.hexdigest()
        with self._lock:
            repo = self.repos.setdefault(repo_id, FakeRepo(repo_id))
            repo.private, repo.gated = repo.private or private, repo.gated or gated
            repo.commits[sha] = files
            repo.main = sha
            for name, f in files.items():
                if f.lfs:
                    self._cdn[f"{repo_id}/{sha}/{f.sha256}"] = (repo_id, sha, name)
        return sha

    def accept_license(self, repo_id: str, token: str) -> None:
        """The account behind ``token`` accepted a gated repo's license."""
        self.repos[repo_id].accepted_tokens.add(token)

    # --- faults and counting -------------------------------------------------------------

    def inject(
        self,
        kind: str,
        *,
        route: str = "any",
        file: str | None = None,
        times: int = 1,
        status: int = 500,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        skip: int = 0,
    ) -> Fault:
        """Queue a fault for ``times`` matching requests, after letting ``skip`` of them through."""
        fault = Fault(
            kind=kind,
            route=route,
            file=file,
            times=times,
            status=status,
            headers=dict(headers or {}),
            delay=delay,
            skip=skip,
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def rate_limit(
        self,
        *,
        route: str = "any",
        file: str | None = None,
        times: int = 1,
        retry_after: float | None = 1,
        ratelimit_t: int | None = None,
        skip: int = 0,
    ) -> Fault:
        """Queue 429s with ``Retry-After`` and/or the Hub's ``RateLimit: "api";r=0;t=N``."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if ratelimit_t is not None:
            headers["RateLimit"] = f'"api";r=0;t={ratelimit_t}'
            headers["RateLimit-Policy"] = '"fixed window";"api";q=500;w=300'
        return self.inject(
            "status", route=route, file=file, times=times, status=429, headers=headers, skip=skip
        )

    def reset(self) -> None:
        """Forget faults and the request log."""
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def count(self, route: str | None = None, *, file: str | None = None, repo: str | None = None) -> int:
        """Requests seen (optionally of one route / file / repo)."""
        with self._lock:
            return sum(
                1
                for s in self.seen
                if (route is None or s.route == route)
                and (file is None or s.file == file)
                and (repo is None or s.repo == repo)
            )

    def _take_fault(self, route: str, file: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.fired < fault.times and fault.matches(route, file):
                    if fault.passed < fault.skip:
                        fault.passed += 1
                        continue
                    fault.fired += 1
                    return fault
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    # --- server --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Reply(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers or {}, body


def _error(status: int, code: str | None = None, message: str | None = None, **headers: str) -> _Reply:
    out = dict(headers)
    if code:
        out["X-Error-Code"] = code
    if message:
        out["X-Error-Message"] = message
    body = json.dumps({"error": message or code or f"HTTP {status}"}).encode()
    out["Content-Type"] = "application/json"
    return _Reply(status, out, body)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the socket was closed on purpose (reset fault)
            super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    # --- routing -------------------------------------------------------------------------

    def _parse(self) -> tuple[str, str | None, str | None, str | None, dict[str, list[str]]]:
        """(route, repo, revision, file, query)."""
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            repo, _, rev = rest.partition("/revision/")
            return "info", repo, rev or "main", None, query
        if path.startswith("/cdn/"):
            key = path[len("/cdn/") :]
            found = self.fake._cdn.get(key)
            if found is None:
                return "get", None, None, None, query
            repo, rev, file = found
            return "get", repo, rev, file, query
        if "/resolve/" in path:
            repo, _, tail = path.lstrip("/").partition("/resolve/")
            rev, _, file = tail.partition("/")
            return ("head" if self.command == "HEAD" else "get"), repo, rev, file, query
        return "other", None, None, None, query

    def _token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        return header[7:].strip() if header.lower().startswith("bearer ") else None

    def _handle(self, method: str) -> None:
        route, repo_id, rev, file, query = self._parse()
        token = self._token()
        status = 500
        try:
            fault = self.fake._take_fault(route, file)
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay)
                fault = None
            if fault is not None and fault.kind == "status":
                raise _Reply(
                    fault.status,
                    {"Content-Type": "application/json", **fault.headers},
                    json.dumps({"error": f"injected {fault.status}"}).encode(),
                )
            reply, body_fault = self._serve(route, repo_id, rev, file, query, token), fault
            status = reply.status
            self._send(reply, head=method == "HEAD", fault=body_fault)
        except _Reply as reply:
            status = reply.status
            self._send(reply, head=method == "HEAD", fault=None)
        finally:
            authorized = token is not None and token in self.fake.valid_tokens
            self.fake._record(Seen(method, route, repo_id, file, status, authorized))

    def _check_access(
        self, repo: FakeRepo | None, repo_id: str | None, token: str | None, route: str
    ) -> FakeRepo:
        if token is not None and token not in self.fake.valid_tokens:
            raise _error(401, None, INVALID_CREDENTIALS)
        if repo is None:
            raise _error(401 if token is None else 404, "RepoNotFound", "Repository not found")
        if repo.private and token is None:
            raise _error(401, "RepoNotFound", "Repository not found")
        if repo.gated and (token is None or token not in repo.accepted_tokens):
            message = (
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in."
                if token is None
                else f"Access to model {repo_id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{repo_id} to ask for access."
            )
            raise _error(401 if token is None else 403, "GatedRepo", message)
        return repo

    def _serve(
        self,
        route: str,
        repo_id: str | None,
        rev: str | None,
        file: str | None,
        query: dict[str, list[str]],
        token: str | None,
    ) -> _Reply:
        if route == "other":
            raise _error(404, None, "Not found")
        repo = self.fake.repos.get(repo_id or "")
        repo = self._check_access(repo, repo_id, token, route)
        sha = repo.main if rev == "main" else rev
        if sha not in repo.commits:
            raise _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = repo.commits[sha]
        if route == "info":
            return self._info(repo, sha, files, blobs=query.get("blobs", ["false"])[0].lower() == "true")
        if file is None or file not in files:
            raise _error(404, "EntryNotFound", f"{file} does not exist on {rev}", **{"X-Repo-Commit": sha})
        entry = files[file]
        common = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if entry.lfs and not self.path.startswith("/cdn/"):
            location = f"http://{self.headers.get('Host')}/cdn/{repo.repo_id}/{sha}/{entry.sha256}"
            return _Reply(
                302,
                {
                    **common,
                    "Location": location,
                    "ETag": f'"{entry.blob_id}"',
                    "X-Linked-Etag": f'"{entry.sha256}"',
                    "X-Linked-Size": str(entry.size),
                    "Content-Length": "0",
                },
            )
        etag = entry.sha256 if entry.lfs else entry.blob_id
        return _Reply(
            200, {**common, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}, entry.read()
        )

    def _info(self, repo: FakeRepo, sha: str, files: dict[str, RepoFile], *, blobs: bool) -> _Reply:
        siblings: list[dict[str, Any]] = []
        for name, f in sorted(files.items()):
            sibling: dict[str, Any] = {"rfilename": name}
            if blobs:
                sibling["size"] = f.size
                sibling["blobId"] = f.blob_id
                if f.lfs:
                    sibling["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(sibling)
        body = {
            "_id": hashlib.md5(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": sha,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "library_name": "transformers",
            "lastModified": "2026-01-01T00:00:00.000Z",
            "siblings": siblings,
        }
        return _Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    # --- writing -------------------------------------------------------------------------

    def _send(self, reply: _Reply, *, head: bool, fault: Fault | None) -> None:
        body = reply.body
        headers = dict(reply.headers)
        status = reply.status
        start = 0
        if status == 200 and body and not head:
            requested = self.headers.get("Range")
            if requested and requested.startswith("bytes="):
                first, _, last = requested[6:].partition("-")
                start = int(first or 0)
                end = int(last) if last else len(body) - 1
                if start >= len(body):
                    raise_status = _error(
                        416, None, "Range Not Satisfiable", **{"Content-Range": f"bytes */{len(body)}"}
                    )
                    self._write(raise_status.status, raise_status.headers, raise_status.body, head=False)
                    return
                headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                body = body[start : end + 1]
                status = 206
        if fault is not None and status in (200, 206) and not head and body:
            if fault.kind == "truncate":  # a short but self-consistent response
                self._write(status, headers, body[: max(1, len(body) // 2)], head=False)
                return
            if fault.kind == "corrupt":  # right length, wrong bytes
                self._write(status, headers, bytes(b ^ 0xFF for b in body[:64]) + body[64:], head=False)
                return
            if fault.kind == "reset":  # promise everything, send half, then RST
                self._write(status, headers, body, head=False, cut_at=max(1, len(body) // 2))
                return
        if head and status == 200:
            headers.setdefault("Content-Length", str(len(body)))
            self._write(status, headers, b"", head=True)
            return
        self._write(status, headers, body, head=head)

    def _write(
        self, status: int, headers: dict[str, str], body: bytes, *, head: bool, cut_at: int | None = None
    ) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if cut_at is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut_at])
        self.wfile.flush()
        # an abortive close: the client sees a reset in the middle of the body
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

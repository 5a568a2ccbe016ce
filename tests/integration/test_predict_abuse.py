"""No request can crash or exhaust the predict server: a real server process under a memory cap
equal to the predict function's (RLIMIT_AS through ``prlimit``, HFLAMBDA_PREDICT_MEMORY_MB),
sent the schemas that used to make the guided decoder expand its grammar natively until the
process died, and oversized chunked bodies; it must refuse them with 4xx naming the problem
and still answer afterwards.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from hflambda.auth.devissuer import DEV_AUDIENCE, DevIssuer
from hflambda.settings import Settings
from tests.fixtures.genai import GenaiWarmed
from tests.fixtures.server import live_predict_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAP_MB = Settings().predict_memory_mb
HELLO = [{"role": "user", "content": "Give me JSON."}]


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "boolean"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


KILLERS: list[tuple[str, dict[str, Any], str]] = [
    ("min-items-1e9", {"type": "array", "minItems": 1_000_000_000, "items": {"type": "integer"}}, "minItems"),
    ("max-items-1e7", {"type": "array", "maxItems": 10_000_000, "items": {"type": "integer"}}, "maxItems"),
    (
        "nested-arrays",
        {
            "type": "array",
            "maxItems": 1000,
            "items": {"type": "array", "maxItems": 1000, "items": {"type": "integer"}},
        },
        "expansion",
    ),
    ("max-length-1e9", {"type": "string", "minLength": 1_000_000_000}, "minLength"),
    ("pattern-repeat", {"type": "string", "pattern": "^a{1000000}$"}, "pattern"),
    ("deep", nested(40), "nesting"),
    ("huge-enum", {"enum": [f"v{i}" for i in range(5000)]}, "enum"),
    ("prefix-items", {"type": "array", "prefixItems": [{"type": "integer"}] * 400}, "prefixItems"),
]


@pytest.fixture(scope="module")
def capped(
    genai_warmed: GenaiWarmed, dev_issuer: DevIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    prlimit = shutil.which("prlimit")
    assert prlimit, "prlimit (util-linux) is needed to cap the server's memory"
    env = {
        "HFLAMBDA_MODEL_STORE": str(genai_warmed.store),
        "HFLAMBDA_REGISTRY": str(genai_warmed.registry),
        "HFLAMBDA_PROFILE": "",
        "HFLAMBDA_AUTH_ISSUER": str(dev_issuer.issuer),
        "HFLAMBDA_AUTH_AUDIENCE": DEV_AUDIENCE,
        "HFLAMBDA_ORT_THREADS": "1",
    }
    log = tmp_path_factory.mktemp("abuse") / "api.log"
    with live_predict_process(env, log=log, prefix=(prlimit, f"--as={CAP_MB * 1024 * 1024}")) as (
        url,
        process,
    ):
        with httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {dev_issuer.token('mallory')}"}, timeout=60
        ) as client:
            yield client, process
        assert process.poll() is None, log.read_text()[-3000:]


def alive(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, f"the server died (exit {process.returncode})"
    assert client.get("/health").status_code == 200
    answer = client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": HELLO, "temperature": 0, "max_tokens": 3}
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("schema", "keyword"), [(s, k) for _, s, k in KILLERS], ids=[n for n, _, _ in KILLERS]
)
def test_killer_schemas_are_refused_before_the_decoder(
    capped: tuple[httpx.Client, subprocess.Popen[bytes]], schema: dict[str, Any], keyword: str
) -> None:
    client, process = capped
    fmt = {"type": "json_schema", "json_schema": {"name": "killer", "schema": schema}}
    response = client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": HELLO, "response_format": fmt, "max_tokens": 16},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"]["keyword"] == keyword and keyword in error["message"]
    assert error["param"] == "response_format.json_schema.schema"
    tool = {
        "type": "function",
        "function": {"name": "boom", "parameters": {"type": "object", "properties": {"x": schema}}},
    }
    via_tools = client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": HELLO, "tools": [tool], "tool_choice": "required"},
    )
    assert (
        via_tools.status_code == 400 and via_tools.json()["error"]["param"] == "tools[0].function.parameters"
    )
    alive(client, process)


def test_schemas_at_the_bounds_are_served_under_the_cap(
    capped: tuple[httpx.Client, subprocess.Popen[bytes]],
) -> None:
    client, process = capped
    for schema in (
        {"type": "array", "minItems": 1000, "items": {"type": "integer"}},
        {
            "type": "array",
            "maxItems": 100,
            "items": {"type": "array", "maxItems": 100, "items": {"enum": [1, 2]}},
        },
        {"type": "string", "maxLength": 8192},
    ):
        fmt = {"type": "json_schema", "json_schema": {"name": "edge", "schema": schema}}
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": "chat",
                "messages": HELLO,
                "response_format": fmt,
                "temperature": 0,
                "max_tokens": 12,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["finish_reason"] in ("length", "stop")
    alive(client, process)


def _chunked_post(url: str, token: str, total: int) -> bytes:
    """POST ``total`` bytes chunked (no Content-Length) on a raw socket; what the server answered."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parsed.hostname}\r\nAuthorization: Bearer {token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        sock.sendall(head.encode())
        piece = b"x" * 65536
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        try:
            for _ in range(total // len(piece)):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: that is the point
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_oversized_chunked_bodies_are_refused_without_being_held(
    capped: tuple[httpx.Client, subprocess.Popen[bytes]], dev_issuer: DevIssuer
) -> None:
    client, process = capped
    before = vm_hwm_mb(process.pid)
    for total in (8 << 20, 24 << 20):
        answer = _chunked_post(str(client.base_url), dev_issuer.token("mallory"), total)
        if answer:  # the 413 may be lost when the peer resets the connection first
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"payload_too_large" in answer
    assert vm_hwm_mb(process.pid) - before < 64, "the refused bodies were held in memory"
    declared = client.post(
        "/v1/chat/completions",
        content=json.dumps({"model": "chat", "messages": HELLO, "pad": "x" * (2 << 20)}),
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == 413
    alive(client, process)

"""A development aid only: serve one handler at RIE's invoke path in a host process.

``python -m rehearsal.devruntime --handler functions.predict.handler.handler --port N``
imports the handler (its init, once) and answers ``POST /2015-03-31/functions/function/
invocations`` one at a time, replying with the handler's result or the runtime's error
document, as the emulator does. It lets the rehearsal's own pieces (front door, event
source mapping, triggers) be exercised without images (``--runtime process``); the rehearsal
and its test tier run the real images under the real emulator (``--runtime containers``).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from hflambda.poller import LocalContext, resolve_handler
from rehearsal.rieclient import INVOKE_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.devruntime")
    parser.add_argument("--handler", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory", type=int, default=128)
    parser.add_argument("--name", default="function")
    args = parser.parse_args(argv)
    handler: Any = None
    init_error: dict[str, Any] | None = None
    try:
        handler = resolve_handler(args.handler)
    except Exception as exc:  # an init error: every invoke reports it, as Lambda does
        init_error = {
            "errorMessage": str(exc),
            "errorType": f"Runtime.{type(exc).__name__}",
            "stackTrace": traceback.format_exc().splitlines(),
        }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            if self.path != INVOKE_PATH:
                self.send_error(404)
                return
            event = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            if init_error is not None:
                body = json.dumps(init_error).encode()
            else:
                context = LocalContext(
                    function_name=args.name,
                    timeout_seconds=args.timeout,
                    memory_limit_in_mb=args.memory,
                    aws_request_id=str(uuid.uuid4()),
                )
                started = time.monotonic()
                try:
                    body = json.dumps(handler(event, context)).encode()
                except Exception as exc:
                    body = json.dumps(
                        {
                            "errorMessage": str(exc),
                            "errorType": type(exc).__name__,
                            "stackTrace": traceback.format_exc().splitlines(),
                        }
                    ).encode()
                if time.monotonic() - started > args.timeout:
                    body = json.dumps(
                        {"errorMessage": f"Task timed out after {args.timeout:.2f} seconds"}
                    ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m rehearsal`` (``make rehearse``): run cdk.out's stack locally until Ctrl-C.

Prints the front door URL and a token (like ``make dev``). Commands on standard input:
``warmup`` (invoke the schedule's target now), ``token [sub]`` (print a new token), ``status``,
``quit``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rehearsal.stack import Rehearsal, RehearsalConfig
from rehearsal.synth import REHEARSAL_OUT, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rehearsal", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--cdk-out", type=Path, default=None,
        help="Run this cloud assembly as it is (e.g. cdk.out). Default: build/rehearsal/cdk.out, synthesized "
        "when stale with the stand-in registry (rehearsal.synth).",
    )  # fmt: skip
    parser.add_argument(
        "--state", type=Path, default=Path(".hflambda/rehearsal"), help="Store, logs and issuer key."
    )
    parser.add_argument("--port", type=int, default=0, help="Front door port (default: a free one).")
    parser.add_argument("--issuer", default=None, help="A real issuer URL instead of the local one.")
    parser.add_argument(
        "--runtime", choices=("containers", "process"), default="containers",
        help="containers: the real images under the RIE (default); process: a development aid without images.",
    )  # fmt: skip
    parser.add_argument(
        "--keep-store", action="store_true", help="Keep the store of a previous run (not a first deploy)."
    )
    args = parser.parse_args(argv)

    cdk_out = args.cdk_out
    if cdk_out is None:
        print(f"synthesizing {REHEARSAL_OUT} if stale (the app with the stand-in registry) ...", flush=True)
        cdk_out = prepare(REHEARSAL_OUT)
    config = RehearsalConfig(
        cdk_out=cdk_out,
        state=args.state,
        runtime=args.runtime,
        port=args.port,
        issuer=args.issuer,
        reset=not args.keep_store,
    )
    rehearsal = Rehearsal(config, say=lambda line: print(line, flush=True))
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        info = rehearsal.start()
        print(f"front door: {info['api']}")
        print(f"routes: {', '.join(info['routes'])}")
        for name, function in info["functions"].items():
            limit = (
                "unreserved"
                if function["max_instances"] >= 1000
                else f"up to {function['max_instances']} instance(s)"
            )
            print(f"  {name}: {function['memory_mb']} MB, {function['timeout_s']} s, {limit}")
        print(f"stand-ins: {json.dumps(info['stand_ins'])}")
        if rehearsal.issuer is not None:
            alice, bob = rehearsal.token("alice"), rehearsal.token("bob")
            print(f"token (alice): {alice}")
            print(f"\nhflambda demo --url {info['api']} --token {alice} --token {bob}\n")
        print("commands: warmup | token [sub] | status | quit   (Ctrl-C stops)", flush=True)
        threading.Thread(target=_commands, args=(rehearsal, stop), daemon=True).start()
        stop.wait()
    finally:
        print("stopping ...", flush=True)
        rehearsal.stop()
    return 0


def _commands(rehearsal: Rehearsal, stop: threading.Event) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "warmup":
            rehearsal.warmup()
        elif words[0] == "token":
            print(rehearsal.token(words[1] if len(words) > 1 else "alice"), flush=True)
        elif words[0] == "status":
            for record in rehearsal.async_records:
                state = "running" if not record.done.is_set() else ("ok" if record.succeeded else "failed")
                print(
                    f"{record.source} -> {record.function}:{record.qualifier}: {state}, {len(record.attempts)} attempt(s)"
                )
            for mapping in rehearsal.mappings:
                print(f"event source -> {mapping.spec.function.function}: {mapping.stats}", flush=True)
        elif words[0] in ("quit", "exit"):
            stop.set()
            return
        else:
            print(f"unknown command {words[0]!r}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""A warmup in its own process, for crash and concurrency tests (not collected by pytest).

    python -m tests.fakes.warmup_child <registry> <store> <hub url | -> <phase> [--barrier DIR]

(``-`` for the hub url: leave the ``hf_endpoint`` setting unset; ``HF_ENDPOINT`` decides.)

``phase`` picks where the process SIGKILLs itself, by wrapping the real step functions here
(production code has no test hooks):

- ``none``: run to the end and print the result as JSON on stdout.
- ``download``: after huggingface_hub moved the second downloaded file into the staging folder.
- ``export``: right after optimum wrote the ONNX export (before quantize, copy and parity).
- ``manifest``: halfway through writing ``manifest.json`` in the staging folder.
- ``rename``: after the revision directory was renamed into place, before CURRENT is swapped.
- ``pointer``: with the new CURRENT written to its temp file, before the atomic rename.

``--barrier DIR``: import the heavy modules, write ``DIR/ready-<pid>``, then wait for
``DIR/go`` — so two children reach the alias lock at the same moment.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(phase: str) -> None:
    """Install the self-kill for ``phase``."""
    if phase == "download":
        from huggingface_hub import file_download

        real_move = file_download._chmod_and_move
        moved = []
        lock = threading.Lock()

        def move(src: Path, dst: Path) -> None:
            real_move(src, dst)
            with lock:
                moved.append(dst)
                if len(moved) >= 2:
                    die()

        file_download._chmod_and_move = move  # type: ignore[assignment]
    elif phase == "export":
        import optimum.exporters.onnx as onnx_exporters

        real_export = onnx_exporters.main_export

        def export(*args: Any, **kwargs: Any) -> Any:
            real_export(*args, **kwargs)
            die()

        onnx_exporters.main_export = export
    elif phase == "manifest":
        import hflambda.store as store

        real_write = store.atomic_write_text

        def write(path: Path, text: str) -> None:
            if path.name == "manifest.json":
                tmp = path.with_name(f".{path.name}.crash.tmp")
                with tmp.open("w") as handle:
                    handle.write(text[: len(text) // 2])
                    handle.flush()
                    os.fsync(handle.fileno())
                die()
            real_write(path, text)

        store.atomic_write_text = write
    elif phase == "rename":
        from hflambda.store import ModelStore

        def swap(self: ModelStore, alias_dir: Path, name: str) -> None:
            die()

        ModelStore._swap_current = swap  # type: ignore[method-assign]
    elif phase == "pointer":
        real_replace = os.replace

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            if Path(dst).name == "CURRENT":
                die()
            real_replace(src, dst, **kwargs)

        os.replace = replace
    elif phase != "none":
        raise SystemExit(f"unknown phase {phase!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("registry", type=Path)
    parser.add_argument("store", type=Path)
    parser.add_argument("hub_url")
    parser.add_argument("phase")
    parser.add_argument("--barrier", type=Path)
    args = parser.parse_args()

    from hflambda.registry import load_registry
    from hflambda.settings import Settings
    from hflambda.store import ModelStore
    from hflambda.warmup import run_warmup
    from hflambda.warmup.export import compile_encoder  # noqa: F401  (heavy imports before the race)
    from hflambda.warmup.retry import RetryPolicy

    arm(args.phase)
    if args.barrier is not None:
        import optimum.exporters.onnx  # noqa: F401

        (args.barrier / f"ready-{os.getpid()}").write_text("")
        while not (args.barrier / "go").exists():
            time.sleep(0.01)
    # "-": no hf_endpoint setting, so huggingface_hub's own HF_ENDPOINT variable must lead to the Hub
    endpoint = None if args.hub_url == "-" else args.hub_url
    settings = Settings(
        model_store=args.store, registry=args.registry, profile="", hf_endpoint=endpoint, hf_token_secret=None
    )
    result = run_warmup(
        load_registry(args.registry),
        ModelStore(args.store),
        settings,
        source_options={"retry": RetryPolicy(base_seconds=0.05, max_backoff_seconds=0.5)},
    )
    print("RESULT " + result.model_dump_json(), flush=True)


if __name__ == "__main__":
    main()

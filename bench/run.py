"""``make bench``: every benchmark in one run on the same machine, then the Markdown table."""

from __future__ import annotations

import argparse
import importlib
import time

SUITES = ["embed_bench", "index_bench", "peers_bench", "genai_bench", "quality_bench", "image_bench"]


def main() -> None:
    """Run the chosen suites (default: all) and write bench/results.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "suites", nargs="*", metavar="SUITE", help=f"any of {', '.join(SUITES)} (default: all)"
    )
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suite(s) {sorted(unknown)}; choose from {', '.join(SUITES)}")
    for name in args.suites or SUITES:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
        print(f"== {name} done in {time.perf_counter() - started:.0f} s", flush=True)
    importlib.import_module("bench.report").main()


if __name__ == "__main__":
    main()

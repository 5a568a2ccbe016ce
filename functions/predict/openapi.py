"""The predict API's OpenAPI document, committed as ``docs/openapi.json`` (``make openapi``).

``python -m functions.predict.openapi`` writes it; ``--check`` only compares and exits 1 when
it is stale. The text is deterministic (sorted keys, two-space indent, a trailing newline) so
a change of the contract shows as a diff in review; tests/integration/test_openapi_doc.py
fails when the app and the file disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

__all__ = ["DOCUMENT", "render"]

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def render(app: FastAPI) -> str:
    """``app``'s OpenAPI schema as the committed text."""
    schema: dict[str, Any] = app.openapi()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write (or with ``--check``, compare) ``docs/openapi.json``."""
    from functions.predict.app import app

    text = render(app)
    if "--check" in argv:
        current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if current != text:
            print(f"{DOCUMENT} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT} ({len(text)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

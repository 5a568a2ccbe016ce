"""bench/results.md renders every section bench/results.json holds."""

from __future__ import annotations

import json

from bench.common import RESULTS
from bench.report import render


def test_every_measured_section_is_rendered() -> None:
    results = json.loads(RESULTS.read_text())
    text = render(results)
    headings = {
        "embeddings": "## Embeddings",
        "generation": "## Generation",
        "index": "## Indexing",
        "peers": "## Peers",
        "quality": "## Quality — sentiment classifier",
        "images": "## Images",
    }
    for section, heading in headings.items():
        assert section in results, f"bench/results.json has no {section!r} section"
        assert heading in text, f"{section!r} is in results.json but not in results.md"
    classifier = results["quality"]["classifier"]
    assert f"{classifier['classify-int8_accuracy'] * 100:.1f} %" in text

"""What a local generation model folder holds (shared by the warmup builder and the engine).

No runtime import here: warmup reads these names without loading onnxruntime_genai.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "GENAI_CONFIG", "read_chat_template"]

GENAI_CONFIG = "genai_config.json"
CHAT_TEMPLATE = "chat_template.jinja"


def read_chat_template(folder: Path) -> str | None:
    """The chat template shipped in ``folder`` (``chat_template.jinja``, else tokenizer_config.json)."""
    jinja = folder / CHAT_TEMPLATE
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            default = named.get("default")
            return default if isinstance(default, str) else None
    return None

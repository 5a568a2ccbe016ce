"""The warmup side: sources, export, quantize, parity, publish.

The only part of hflambda that imports torch, transformers, optimum and huggingface_hub —
and only inside the functions that need them, so importing this package stays cheap: the
runner's task tables import each compiler (export, genai) and source backend on first use.
"""

from hflambda.warmup.runner import COMPILERS, EXPORT_SETTINGS, run_warmup, warm_one
from hflambda.warmup.types import CompileResult, ModelResult, ModelStatus, WarmupResult

__all__ = [
    "COMPILERS",
    "EXPORT_SETTINGS",
    "CompileResult",
    "ModelResult",
    "ModelStatus",
    "WarmupResult",
    "run_warmup",
    "warm_one",
]

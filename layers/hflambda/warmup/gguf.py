"""GGUF → Hugging Face folder, for the ONNX Runtime GenAI builder and the parity check.

transformers (with the ``gguf`` and ``accelerate`` packages) dequantizes a GGUF file into an
fp32 model; that part is right. The tokenizer it builds from a GGUF is not, for GPT-2-style
byte-level vocabularies such as SmolLM2's: a ``LlamaTokenizerFast`` config, eos set to the BOS
token (``<|im_start|>``), a BOS prepended by its post-processor and a SentencePiece-style
decoder — with it onnxruntime-genai emits -1 ids and garbage. So the tokenizer is rebuilt:
the same BPE vocabulary and merges, the ByteLevel pre-tokenizer, a ByteLevel decoder and
post-processor (no BOS), ``GPT2Tokenizer`` class, eos = pad = ``<|im_end|>``,
``add_bos_token = False``, and the chat template stored in the GGUF. What was changed is
returned (the warmup manifest records it).

Heavy imports (torch, transformers, tokenizers) happen inside the function only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hflambda.errors import SourceError

__all__ = ["gguf_to_folder"]

EOS = "<|im_end|>"
BOS = "<|im_start|>"
UNK = "<|endoftext|>"


def gguf_to_folder(gguf: Path, dest: Path) -> tuple[Path, dict[str, Any]]:
    """Write a Hugging Face folder (fp32 safetensors, repaired tokenizer, chat template) to ``dest``."""
    started = time.perf_counter()
    try:
        import torch
        from tokenizers import Tokenizer, decoders, processors
        from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2TokenizerFast
    except ImportError as exc:  # pragma: no cover - the dev extra installs them
        raise SourceError(f"reading {gguf.name} needs transformers with gguf + accelerate: {exc}") from exc
    dest.mkdir(parents=True, exist_ok=True)
    try:
        original = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise SourceError(f"transformers could not read {gguf}: {type(exc).__name__}: {exc}") from exc
    loaded_s = time.perf_counter() - started
    backend = Tokenizer.from_str(original.backend_tokenizer.to_str())
    if json.loads(backend.to_str())["model"]["type"] != "BPE":
        raise SourceError(f"{gguf.name}: only byte-level BPE vocabularies are supported (GPT-2 style)")
    vocab = backend.get_vocab()
    missing = [t for t in (EOS, BOS, UNK) if t not in vocab]
    if missing:
        raise SourceError(
            f"{gguf.name}: the vocabulary has no {missing}; not a ChatML model this converter knows"
        )
    before = {
        "tokenizer_class": type(original).__name__,
        "eos_token": original.eos_token,
        "bos_token": original.bos_token,
        "decoder": json.loads(original.backend_tokenizer.to_str()).get("decoder", {}).get("type"),
        "post_processor": json.loads(original.backend_tokenizer.to_str())
        .get("post_processor", {})
        .get("type"),
    }
    backend.normalizer = None
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=UNK,
        add_bos_token=False,
        add_prefix_space=False,
        model_max_length=int(getattr(model.config, "max_position_embeddings", 2048)),
    )
    if not original.chat_template:
        raise SourceError(
            f"{gguf.name} carries no chat template (tokenizer.chat_template); cannot serve chat"
        )
    tokenizer.chat_template = original.chat_template
    tokenizer.save_pretrained(dest)
    eos_id, bos_id = vocab[EOS], vocab[BOS]
    for config in (model.config, model.generation_config):
        if config is None:
            continue
        config.eos_token_id = eos_id
        config.bos_token_id = bos_id
        config.pad_token_id = eos_id
    model.save_pretrained(dest, safe_serialization=True)
    conversion = {
        "kind": "gguf",
        "architecture": type(model).__name__,
        "dequantized_to": "float32",
        "tokenizer_before": before,
        "tokenizer_after": {
            "tokenizer_class": "GPT2TokenizerFast",
            "eos_token": EOS,
            "bos_token": BOS,
            "add_bos_token": False,
            "decoder": "ByteLevel",
            "post_processor": "ByteLevel",
        },
        "eos_token_id": eos_id,
        "load_s": round(loaded_s, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
    return dest, conversion

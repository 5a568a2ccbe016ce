"""Text generation: OpenAI-style chat over local ONNX Runtime GenAI models and remote providers.

- ``base``: the contract (``ChatRequest``, ``Completion``, ``ChatEngine``) and JSON validation.
- ``local``: ``LocalChatEngine`` (onnxruntime_genai; the pool loads it like any store model).
- ``remote``: ``RemoteChatEngine`` (an OpenAI-compatible provider over httpx) and the warmup
  check ``check_remote_model``.
- ``chain``: fallback chains within the request's time budget, streamed or whole.
- ``tools``: tool calls on local models (prompt, grammar, parsing); ``bounds``: the limits
  every caller schema must meet before it reaches the guided decoder.

``onnxruntime_genai`` is imported only by ``local`` (loaded through the pool), so importing
this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hflambda.errors import ModelNotReady
from hflambda.generation.base import (
    ChatEngine,
    ChatMessage,
    ChatRequest,
    Completion,
    ResponseFormat,
    Tool,
    ToolCall,
    validate_output,
)
from hflambda.generation.bounds import SchemaLimits, check_schema_bounds
from hflambda.generation.chain import (
    Attempt,
    ChainResult,
    StreamEvent,
    StreamStart,
    chain_for,
    exhausted_status,
    run_chain,
    stream_chain,
)
from hflambda.generation.exceptions import AttemptFailed, FailureKind, RemoteCheckFailed, RemoteModelMissing
from hflambda.registry import ModelSpec, Task
from hflambda.settings import Settings

if TYPE_CHECKING:
    from hflambda.engines import ModelPool
    from hflambda.generation.chain import EngineFor

__all__ = [
    "Attempt",
    "AttemptFailed",
    "ChainResult",
    "ChatEngine",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "FailureKind",
    "RemoteCheckFailed",
    "RemoteModelMissing",
    "ResponseFormat",
    "SchemaLimits",
    "StreamEvent",
    "StreamStart",
    "Tool",
    "ToolCall",
    "chain_for",
    "check_schema_bounds",
    "engine_factory",
    "exhausted_status",
    "run_chain",
    "stream_chain",
    "validate_output",
]


def engine_factory(pool: ModelPool, settings: Settings) -> EngineFor:
    """Engines for chain members: local ones from the pool, remote ones per call (cheap: no I/O)."""
    from hflambda.generation.remote import RemoteChatEngine

    def engine_for(spec: ModelSpec) -> ChatEngine:
        if spec.is_remote:
            return RemoteChatEngine(spec, settings)
        engine = pool.get(spec.alias, Task.TEXT_GENERATION)
        if not isinstance(engine, ChatEngine):
            raise ModelNotReady(
                spec.alias, f"its loader returned {type(engine).__name__}, which is not a ChatEngine"
            )
        return engine

    return engine_for

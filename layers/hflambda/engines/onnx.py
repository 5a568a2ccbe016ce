"""onnxruntime + tokenizers engines for encoder models (embeddings, classification).

No torch, no transformers: the tokenizer is ``tokenizer.json`` loaded with ``tokenizers``,
the model is ``model.onnx`` loaded with ``onnxruntime``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from hflambda.errors import BadInput, StoreCorrupt
from hflambda.runtime import available_cpus
from hflambda.store import PublishedModel
from hflambda.telemetry import logger

__all__ = [
    "OnnxClassifier",
    "OnnxEmbedder",
    "OnnxEncoder",
    "RunMode",
    "buckets",
    "session_options",
    "split_for_workers",
]

BATCH = 32
# a length bucket closes when padding would exceed this share of its tokens, or at this size
# (measured on 100 documents of 10-400 tokens: 14.6 docs per CPU-second in 4 fixed chunks of
# 32, 17.6 in 11 buckets at these bounds)
BUCKET_MAX_PADDING = 0.1
BUCKET_MAX_TOKENS = 4096
BUCKET_MIN_ROWS = 2

# latency: one run at a time, its intra-op threads = the CPUs (a single input uses them all);
# throughput: runs of one intra-op thread each, as many at once as there are CPUs, over the
# call's length buckets (no intra-op barriers; measured on 2 CPUs, batches of 32: int8
# +3-8 %, fp32 +0-4 %; single-input latency is one CPU's)
RunMode = Literal["latency", "throughput"]

# graph optimization at load: an export warmup already fused (attention, LayerNorm, GELU)
# needs only the basic passes, which keeps session creation (cold start) short
LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def session_options(threads: int = 0, level: str = "all") -> ort.SessionOptions:
    """Session options that fit Lambda.

    Threads = the CPUs this process may really use (affinity mask and cgroup quota, not
    the host's count), one inter-op thread, and no spinning: a worker that spins after a
    run burns the function's CPU share (and, frozen between invocations, helps nobody).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cpus()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = LEVELS[level]
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def buckets(lengths: list[int], *, max_rows: int = BATCH) -> list[list[int]]:
    """Positions grouped into batches of similar length (each padded to its own longest).

    Sorted by length; a bucket closes at ``max_rows``, at ``BUCKET_MAX_TOKENS`` padded
    tokens, or when padding to the next input would exceed ``BUCKET_MAX_PADDING`` of the
    bucket's tokens (once it holds ``BUCKET_MIN_ROWS``, so short inputs are not run alone).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = max(lengths[i], 1)
        if current:
            rows = len(current) + 1
            padded = rows * n  # sorted: the new input is the longest
            too_wide = len(current) >= BUCKET_MIN_ROWS and (padded - real - n) > BUCKET_MAX_PADDING * padded
            if rows > max_rows or padded > BUCKET_MAX_TOKENS or too_wide:
                out.append(current)
                current, real = [], 0
        current.append(i)
        real += n
    if current:
        out.append(current)
    return out


def split_for_workers(groups: list[list[int]], lengths: list[int], workers: int) -> list[list[int]]:
    """``groups`` with the costliest halved until there are ``workers`` of them (or every
    group is one row), costliest first, so parallel runs finish together."""

    def cost(group: list[int]) -> int:
        return len(group) * max(lengths[i] for i in group)

    out = [list(g) for g in groups]
    while len(out) < workers:
        widest = max(range(len(out)), key=lambda k: (len(out[k]) > 1, cost(out[k])))
        group = out[widest]
        if len(group) < 2:
            break
        half = len(group) // 2
        out[widest : widest + 1] = [group[:half], group[half:]]
    return sorted(out, key=cost, reverse=True)


class OnnxEncoder:
    """Shared machinery: tokenizer, session, length checks, length-sorted batching."""

    def __init__(
        self, model: PublishedModel, *, max_tokens: int, threads: int = 0, mode: RunMode = "latency"
    ) -> None:
        self.alias = model.alias
        self.model = model
        self.max_tokens = max_tokens
        onnx_file = model.file(model.manifest.export.get("onnx_file", "model.onnx"))
        tokenizer_file = model.file("tokenizer.json")
        for required in (onnx_file, tokenizer_file):
            if not required.is_file():
                raise StoreCorrupt(model.alias, f"{required.name} missing in {model.path}")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self._truncator: Tokenizer | None = None
        graph = model.manifest.info.get("graph") or {}
        self.session_level = str(graph.get("session_optimization", "all"))
        cpus = threads or available_cpus()
        self.mode: RunMode = mode
        self.workers = cpus if mode == "throughput" else 1
        options = session_options(1 if mode == "throughput" else cpus, self.session_level)
        self.session = ort.InferenceSession(
            str(onnx_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._executor: ThreadPoolExecutor | None = None
        # what the session really runs with (the image tier asserts it under a CPU limit)
        self.session_settings = {
            "mode": mode,
            "parallel_runs": self.workers,
            "intra_op_threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "intra_op_spinning": options.get_session_config_entry("session.intra_op.allow_spinning") != "0",
            "inter_op_spinning": options.get_session_config_entry("session.inter_op.allow_spinning") != "0",
            "optimization": self.session_level,
        }
        logger.info("onnx session created", extra={"model": self.alias, **self.session_settings})
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._memory = sum(e.size for e in model.manifest.files.values())
        pad = model.manifest.info.get("pad_token_id")
        self.pad_id = int(pad) if pad is not None else (self.tokenizer.token_to_id("[PAD]") or 0)

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size: the files, plus session overhead."""
        return int(self._memory * 1.3) + (32 << 20)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text including special tokens."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], *, truncate: bool) -> list[Encoding]:
        """Tokenize, rejecting (or truncating) texts over the model's limit."""
        if not texts:
            raise BadInput("input is empty: give at least one text", field="input")
        encodings = self.tokenizer.encode_batch(texts)
        over = [i for i, enc in enumerate(encodings) if len(enc.ids) > self.max_tokens]
        if over and not truncate:
            index, tokens = over[0], len(encodings[over[0]].ids)
            raise BadInput(
                f"input[{index}] is {tokens} tokens; model {self.alias!r} accepts at most "
                f"{self.max_tokens}. Shorten it or send truncate=true.",
                field=f"input[{index}]",
                tokens=tokens,
                limit=self.max_tokens,
            )
        if over:
            # the tokenizer's own truncation keeps the closing special token ([SEP]), as
            # sentence-transformers does; cutting the encoding would drop it
            for i, enc in zip(over, self._truncating().encode_batch([texts[i] for i in over]), strict=True):
                encodings[i] = enc
        return encodings

    def _truncating(self) -> Tokenizer:
        """A second tokenizer that truncates to ``max_tokens`` (built on first use)."""
        if self._truncator is None:
            truncator = Tokenizer.from_str(self.tokenizer.to_str())
            truncator.no_padding()
            truncator.enable_truncation(self.max_tokens)
            self._truncator = truncator
        return self._truncator

    def _batches(
        self, encodings: list[Encoding], size: int = BATCH
    ) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Length buckets (see ``buckets``), each padded to its longest input only, with the
        original positions so callers restore input order. In throughput mode the buckets
        are split so every worker has a run (see ``split_for_workers``)."""
        lengths = [len(e.ids) for e in encodings]
        groups = buckets(lengths, max_rows=size)
        if self.workers > 1:
            groups = split_for_workers(groups, lengths, self.workers)
        for idx in groups:
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = enc.attention_mask
                types[row, :n] = enc.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            yield idx, {k: v for k, v in feed.items() if k in self.input_names}

    def run(self, feed: dict[str, np.ndarray]) -> Any:
        """One session run, first output."""
        return self.session.run(self.output_names[:1], feed)[0]

    def map_batches(
        self, encodings: list[Encoding], post: Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """``post(output, feed)`` per batch with its positions: one run at a time (latency
        mode) or ``workers`` at once on one session (throughput mode; onnxruntime runs are
        thread-safe and release the GIL)."""

        def one(feed: dict[str, np.ndarray]) -> np.ndarray:
            return post(self.run(feed), feed)

        batches = list(self._batches(encodings))
        if self.workers == 1 or len(batches) == 1:
            for idx, feed in batches:
                yield idx, one(feed)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix=f"ort-{self.alias}"
            )
        yield from zip(
            (idx for idx, _ in batches), self._executor.map(one, [feed for _, feed in batches]), strict=True
        )


class OnnxEmbedder(OnnxEncoder):
    """Sentence embeddings: pooled (mean or CLS) and optionally L2-normalised."""

    def __init__(
        self,
        model: PublishedModel,
        *,
        max_tokens: int,
        pooling: str = "mean",
        normalize: bool = True,
        threads: int = 0,
        mode: RunMode = "latency",
    ) -> None:
        super().__init__(model, max_tokens=max_tokens, threads=threads, mode=mode)
        self.pooling = pooling
        self.normalize = normalize
        self.dimensions = int(
            model.manifest.info.get("dimensions") or self.session.get_outputs()[0].shape[-1]
        )

    def embed(self, texts: list[str], *, truncate: bool = False) -> np.ndarray:
        """float32 (len(texts), dimensions), in input order."""
        encodings = self.encode(texts, truncate=truncate)
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for idx, pooled in self.map_batches(encodings, self._pool):
            out[idx] = pooled
        return out

    def _pool(self, hidden: np.ndarray, feed: dict[str, np.ndarray]) -> np.ndarray:
        if hidden.ndim == 3:
            if self.pooling == "cls":
                pooled = hidden[:, 0, :]
            else:
                mask = feed["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        else:
            pooled = hidden
        if self.normalize:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return np.asarray(pooled)


class OnnxClassifier(OnnxEncoder):
    """Sequence classification: softmax (single label) or sigmoid (multi label) over logits."""

    def __init__(
        self, model: PublishedModel, *, max_tokens: int, threads: int = 0, mode: RunMode = "latency"
    ) -> None:
        super().__init__(model, max_tokens=max_tokens, threads=threads, mode=mode)
        id2label = model.manifest.info.get("id2label") or {}
        count = int(self.session.get_outputs()[0].shape[-1] or len(id2label))
        self.labels = [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(count)]
        self.multi_label = model.manifest.info.get("problem_type") == "multi_label_classification"

    def classify(
        self, texts: list[str], *, top_k: int | None = 1, truncate: bool = False
    ) -> list[list[tuple[str, float]]]:
        """Per text: (label, score) sorted by score, at most top_k (None: all labels)."""
        encodings = self.encode(texts, truncate=truncate)
        scores = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for idx, probs in self.map_batches(encodings, self._probabilities):
            scores[idx] = probs
        k = len(self.labels) if top_k is None else min(top_k, len(self.labels))
        results = []
        for row in scores:
            best = np.argsort(-row)[:k]
            results.append([(self.labels[i], float(row[i])) for i in best])
        return results

    def _probabilities(self, logits: np.ndarray, _feed: dict[str, np.ndarray]) -> np.ndarray:
        logits = logits.astype(np.float32)
        if self.multi_label:
            return np.asarray(1.0 / (1.0 + np.exp(-logits)))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def model_files_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

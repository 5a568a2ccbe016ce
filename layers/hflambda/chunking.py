"""Token-window chunking of document text (what the index function embeds, chunk by chunk).

A text is split into windows of ``window`` tokens that share ``overlap`` tokens with the
window before; each chunk is the exact source substring from its first token's start to its
last token's end (offsets from the embedding model's own tokenizer). :class:`TokenChunker`
fits the window to the model's limit, leaving room for the special tokens it adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

__all__ = ["SPECIAL_TOKENS", "TextChunk", "TokenChunker", "chunk_text"]

SPECIAL_TOKENS = 2  # [CLS] and [SEP] that the embedder adds around every chunk


@dataclass(frozen=True)
class TextChunk:
    """A token window of a text: number, text, and ``[start, end)`` character offsets."""

    chunk: int
    text: str
    start: int
    end: int


def chunk_text(text: str, tokenizer: Tokenizer, *, window: int, overlap: int) -> list[TextChunk]:
    """Split ``text`` into windows of ``window`` tokens sharing ``overlap`` tokens.

    Offsets come from the tokenizer, so a chunk is the exact source substring from its first
    token's start to its last token's end. A text of at most ``window`` tokens is one chunk
    spanning the whole text. ``tokenizer`` must not pad or truncate (see ``TokenChunker``).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 token, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window), got {overlap} for window {window}")
    offsets = [o for o in tokenizer.encode(text, add_special_tokens=False).offsets if o[1] > o[0]]
    if len(offsets) <= window:
        return [TextChunk(0, text, 0, len(text))]
    chunks: list[TextChunk] = []
    step = window - overlap
    first = 0
    while True:
        last = min(first + window, len(offsets)) - 1
        start, end = offsets[first][0], offsets[last][1]
        chunks.append(TextChunk(len(chunks), text[start:end], start, end))
        if last == len(offsets) - 1:
            return chunks
        first += step


class TokenChunker:
    """``chunk_text`` with a private copy of a tokenizer that neither pads nor truncates."""

    def __init__(
        self, tokenizer: Tokenizer, *, window: int, overlap: int, max_tokens: int | None = None
    ) -> None:
        if tokenizer.padding is not None or tokenizer.truncation is not None:
            tokenizer = Tokenizer.from_str(tokenizer.to_str())
            tokenizer.no_padding()
            tokenizer.no_truncation()
        self.tokenizer = tokenizer
        if max_tokens is not None:
            window = min(window, max_tokens - SPECIAL_TOKENS)
        self.window = max(1, window)
        self.overlap = max(0, min(overlap, self.window // 2))

    def __call__(self, text: str) -> list[TextChunk]:
        """Chunks of ``text``."""
        return chunk_text(text, self.tokenizer, window=self.window, overlap=self.overlap)

    def tokens(self, text: str) -> int:
        """Tokens of ``text`` (no special tokens), as chunking counts them."""
        return sum(1 for o in self.tokenizer.encode(text, add_special_tokens=False).offsets if o[1] > o[0])

"""Token chunking: windows, overlap, exact character offsets, model limits."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from hflambda.chunking import TokenChunker, chunk_text
from tests.fakes.embedder import minilm_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return minilm_tokenizer()


def words(n: int) -> str:
    return " ".join(f"word{i % 7}" if i % 3 else "token" for i in range(n))


def test_short_text_is_one_chunk_spanning_everything(tokenizer: Tokenizer) -> None:
    text = "  A short note.  "
    chunks = chunk_text(text, tokenizer, window=20, overlap=5)
    assert len(chunks) == 1
    assert (chunks[0].chunk, chunks[0].start, chunks[0].end, chunks[0].text) == (0, 0, len(text), text)


def test_windows_overlap_and_offsets_are_exact(tokenizer: Tokenizer) -> None:
    text = words(300)
    window, overlap = 50, 10
    chunks = chunk_text(text, tokenizer, window=window, overlap=overlap)
    offsets = [o for o in tokenizer.encode(text, add_special_tokens=False).offsets if o[1] > o[0]]
    assert [c.chunk for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        tokens = len(tokenizer.encode(chunk.text, add_special_tokens=False).ids)
        assert tokens <= window
    # consecutive windows start (window - overlap) tokens apart and share ``overlap`` tokens
    starts = [c.start for c in chunks]
    token_starts = [o[0] for o in offsets]
    assert [token_starts.index(s) for s in starts] == list(
        range(0, len(chunks) * (window - overlap), window - overlap)
    )
    assert chunks[0].start == 0 and chunks[-1].end == offsets[-1][1]
    covered = set()
    for chunk in chunks:
        covered.update(i for i, (a, b) in enumerate(offsets) if a >= chunk.start and b <= chunk.end)
    assert covered == set(range(len(offsets)))


def test_unicode_offsets_are_characters(tokenizer: Tokenizer) -> None:
    text = "Héllo wörld — naïve café 日本語 " * 40
    for chunk in chunk_text(text, tokenizer, window=16, overlap=4):
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip() == chunk.text


def test_chunker_clamps_window_to_the_model_and_copies_a_padding_tokenizer(tokenizer: Tokenizer) -> None:
    padded = Tokenizer.from_str(tokenizer.to_str())
    padded.enable_padding(length=512)
    padded.enable_truncation(max_length=8)
    chunker = TokenChunker(padded, window=200, overlap=150, max_tokens=32)
    assert chunker.window == 30  # room for [CLS] and [SEP]
    assert chunker.overlap == 15  # at most half a window
    assert padded.padding is not None  # the caller's tokenizer is left alone
    chunks = chunker(words(200))
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(tokenizer.encode(chunk.text).ids) <= 32


def test_bad_window_or_overlap_is_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="window"):
        chunk_text("x", tokenizer, window=0, overlap=0)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", tokenizer, window=10, overlap=10)

"""Split documents into overlapping passages, keeping character offsets into the source.

Sizes are counted in words (whitespace-separated): a cheap, tokenizer-free proxy
(English prose is about 1.3 word-piece tokens per word, so the 200-word default
stays under MiniLM's 256-token window). A chunk ends at the last sentence end
inside its window when one falls in the window's second half.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kgnlp.errors import ConfigurationError
from retrieval.types import Document, Passage

__all__ = ["Chunk", "chunk_documents", "chunk_text", "count_tokens"]

_WORD = re.compile(r"\S+")
_PIECE = re.compile(r"\w+|[^\w\s]")
_SENT_END = re.compile(r"[.!?:;][\"')\]]*$")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A slice ``text[start:end]`` of a source text."""

    text: str
    start: int
    end: int


def count_tokens(text: str) -> int:
    """Approximate token count: words and punctuation marks (close to word-piece counts for English).

    Args:
        text: Any text.

    Returns:
        The count.
    """
    return len(_PIECE.findall(text))


def chunk_text(text: str, *, max_words: int = 200, overlap: int = 40) -> list[Chunk]:
    """Cut ``text`` into windows of at most ``max_words`` words, consecutive windows sharing ``overlap`` words.

    Args:
        text: The text.
        max_words: Window size in words (>= 1).
        overlap: Words repeated at the start of the next window (0 <= overlap < max_words).

    Returns:
        Chunks in order; one chunk for a short text, none for a blank one.
    """
    if max_words < 1:
        raise ConfigurationError(f"max_words must be >= 1, got {max_words!r}")
    if not 0 <= overlap < max_words:
        raise ConfigurationError(f"overlap must be in [0, max_words), got {overlap!r} with max_words={max_words}")
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        return []
    if len(words) <= max_words:
        return [Chunk(text[words[0][0] : words[-1][1]], words[0][0], words[-1][1])]
    out: list[Chunk] = []
    i = 0
    while i < len(words):
        j = min(i + max_words, len(words))
        if j < len(words):
            # prefer a sentence boundary in the second half of the window
            for e in range(j, i + max_words // 2, -1):
                if _SENT_END.search(text[words[e - 1][0] : words[e - 1][1]]):
                    j = e
                    break
        out.append(Chunk(text[words[i][0] : words[j - 1][1]], words[i][0], words[j - 1][1]))
        if j >= len(words):
            break
        i = max(j - overlap, i + 1)
    return out


def chunk_documents(
    docs: Iterable[Document], *, max_words: int = 200, overlap: int = 40, first_key: int = 0
) -> Iterator[Passage]:
    """Chunk documents into passages with consecutive integer keys.

    Args:
        docs: Documents.
        max_words: Window size in words.
        overlap: Overlap in words.
        first_key: Key of the first passage.

    Yields:
        Passages; a single-chunk document's passage id is the document id, otherwise ``doc_id#n``.
    """
    key = first_key
    for d in docs:
        chunks = chunk_text(d.text, max_words=max_words, overlap=overlap)
        for n, c in enumerate(chunks):
            pid = d.id if len(chunks) == 1 else f"{d.id}#{n}"
            meta = dict(d.metadata)
            if d.title:
                meta.setdefault("title", d.title)
            if d.source:
                meta.setdefault("source", d.source)
            yield Passage(key, pid, d.id, c.text, c.start, c.end, meta)
            key += 1

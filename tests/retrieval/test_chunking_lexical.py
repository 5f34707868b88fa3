"""Chunk boundaries and overlap; BM25 search, removal and persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kgnlp.errors import ConfigurationError, ValidationError
from retrieval.chunking import chunk_documents, chunk_text, count_tokens
from retrieval.lexical import BM25Index, stem, tokenize
from retrieval.types import Document


def test_short_text_is_one_chunk_with_offsets() -> None:
    text = "  Hello there, world.  "
    [c] = chunk_text(text, max_words=10, overlap=2)
    assert c.text == "Hello there, world."
    assert text[c.start : c.end] == c.text
    assert chunk_text("   ", max_words=5, overlap=0) == []


def test_exact_window_boundaries_and_overlap() -> None:
    words = [f"w{i}" for i in range(10)]
    text = " ".join(words)
    chunks = chunk_text(text, max_words=4, overlap=1)
    assert [c.text.split() for c in chunks] == [words[0:4], words[3:7], words[6:10]]
    for c in chunks:
        assert text[c.start : c.end] == c.text
    # exactly max_words: one chunk, no empty tail
    assert len(chunk_text(" ".join(words[:4]), max_words=4, overlap=1)) == 1
    # no overlap: a partition of the words
    parts = chunk_text(text, max_words=3, overlap=0)
    assert [w for c in parts for w in c.text.split()] == words


def test_chunk_prefers_sentence_end_in_second_half() -> None:
    text = "a b c d e f. g h i j k l m n"
    chunks = chunk_text(text, max_words=8, overlap=0)
    assert chunks[0].text == "a b c d e f."
    assert chunks[1].text.startswith("g")


def test_chunk_args_validated() -> None:
    with pytest.raises(ConfigurationError, match="overlap"):
        chunk_text("x", max_words=3, overlap=3)
    with pytest.raises(ConfigurationError, match="max_words"):
        chunk_text("x", max_words=0, overlap=0)


def test_chunk_documents_ids_keys_metadata() -> None:
    docs = [Document("d1", "one two three four five", metadata={"intent": "a"}), Document("d2", "short", title="T")]
    ps = list(chunk_documents(docs, max_words=3, overlap=1, first_key=10))
    assert [(p.key, p.id, p.doc_id) for p in ps] == [(10, "d1#0", "d1"), (11, "d1#1", "d1"), (12, "d2", "d2")]
    assert ps[0].metadata == {"intent": "a"} and ps[2].metadata == {"title": "T"}
    assert count_tokens("Hello, world!") == 4


def test_tokenize_and_stem() -> None:
    assert stem("cancelling") == "cancel" and stem("refunds") == "refund" and stem("shipped") == "ship"
    assert tokenize("How do I cancel my orders?") == ["cancel", "order"]


def test_bm25_search_remove_save_load(tmp_path: Path) -> None:
    idx = BM25Index()
    idx.add([5, 7, 9], ["cancel my order please", "track the delivery of a package", "refund for an order"])
    s, k = idx.search("I want to cancel an order", 3)
    assert list(k) == [5, 9] and s[0] > s[1] > 0
    assert len(idx.search("zebra", 3)[1]) == 0
    with pytest.raises(ValidationError):
        idx.add([5], ["dup"])
    assert idx.remove([5, 42]) == 1
    assert list(idx.search("cancel order", 3)[1]) == [9]
    idx.save(tmp_path / "bm25")
    back = BM25Index.load(tmp_path / "bm25")
    assert list(back.keys()) == [7, 9]
    np.testing.assert_allclose(back.search("refund order", 2)[0], idx.search("refund order", 2)[0])
    assert list(back.search("package delivery", 2)[1]) == [7]

"""The real sentence embedder: normalised vectors, batching, the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.embedder import EmbeddingCache, SentenceEmbedder


def test_embeddings_normalised_and_cached(embedder_path: Path, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb = SentenceEmbedder(embedder_path, cache=cache, batch_size=2)
    assert emb.name == "all-minilm-l6-v2"
    texts = ["cancel my order", "where is my parcel?", "cancel my order", "reset my password"]
    v = emb.embed(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    assert len(cache) == 3
    assert float(v[0] @ v[1]) < float(v[0] @ emb.embed(["I want to cancel an order"])[0])
    # a fresh embedder over the same cache file answers from disk, without the model
    again = SentenceEmbedder(embedder_path, cache=EmbeddingCache(tmp_path / "c.sqlite"))
    np.testing.assert_allclose(again.embed(texts[:2]), v[:2], atol=1e-6)
    assert again._model is None
    assert emb.embed([]).shape == (0, 384)

"""The text tower: item vectors from item text (MiniLM), so that items nobody played yet get scores.

``encode_items`` turns ``"name. tags: …"`` into normalised MiniLM vectors (cached by content
hash as ``.npy``); ``TextTower`` learns a linear item tower over them and free user vectors with
BPR. Because an item's vector depends only on its text, a new item is scored like any other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kgnlp.files import atomic_write_bytes

__all__ = ["TextTower", "encode_items"]


def encode_items(texts: list[str], embedder: Any, cache_dir: Path | None = None, batch_size: int = 64) -> np.ndarray:
    """Normalised sentence vectors of item texts: ``(n, 384)`` float32.

    Args:
        texts: one text per item.
        embedder: a SentenceTransformer (``models.loading.load_sentence_embedder``).
        cache_dir: where to keep ``text-<sha>.npy`` (skipped when None).
        batch_size: encode batch size.
    """
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir) / f"text-{digest}.npy" if cache_dir else None
    if path is not None and path.is_file():
        arr = np.load(path, allow_pickle=False)
        if arr.shape[0] == len(texts):
            return arr
    vecs = embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    arr = np.asarray(vecs, dtype=np.float32)
    if path is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, arr)
        atomic_write_bytes(path, buf.getvalue())
    return arr


class TextTower(nn.Module):
    """Free user vectors against a linear tower over fixed item text vectors.

    Args:
        n_users: user count.
        text: ``(n_items, k)`` item text vectors.
        dim: output size.
    """

    def __init__(self, n_users: int, text: np.ndarray, dim: int = 64) -> None:
        super().__init__()
        vecs = torch.from_numpy(np.asarray(text, np.float32))
        self.text: torch.Tensor
        self.register_buffer("text", vecs)
        self.user = nn.Embedding(n_users, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        self.tower = nn.Sequential(nn.Linear(int(vecs.shape[1]), dim))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.tower(self.text)

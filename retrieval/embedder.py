"""Text embedders: the ``Embedder`` protocol and a sentence-transformers implementation.

Vectors are float32 and L2-normalised, so inner product equals cosine similarity.
``SentenceEmbedder`` can keep an on-disk cache (SQLite, keyed by a hash of the
model name and the text) so re-indexing an unchanged corpus costs no inference.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kgnlp.errors import ConfigurationError, ModelUnavailableError

__all__ = ["Embedder", "EmbeddingCache", "SentenceEmbedder", "normalize_rows"]


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to normalised float32 vectors of a fixed dimension."""

    name: str

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an ``(len(texts), dim)`` float32 array with unit-norm rows."""
        ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as float32 with unit-norm rows (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class EmbeddingCache:
    """A persistent text → vector cache in one SQLite file (safe across threads and restarts).

    Args:
        path: The SQLite file (created on first use).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, dim INTEGER, data BLOB)")
            self._conn = conn
        return self._conn

    @staticmethod
    def key(model: str, text: str) -> str:
        """The cache key of ``text`` embedded by ``model``."""
        return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among ``keys``."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            db = self._db()
            for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                part = list(keys[i : i + 500])
                q = f"SELECT key, dim, data FROM vec WHERE key IN ({','.join('?' * len(part))})"
                for k, _dim, data in db.execute(q, part):
                    out[k] = np.frombuffer(data, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors (one transaction)."""
        with self._lock:
            db = self._db()
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
                    [(k, int(v.shape[0]), np.asarray(v, np.float32).tobytes()) for k, v in items.items()],
                )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM vec").fetchone()[0])

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SentenceEmbedder:
    """A sentence-transformers model behind the ``Embedder`` protocol.

    The model is loaded on first use when a path is given (constructors do no I/O).

    Args:
        model: A loaded ``SentenceTransformer`` or the path of a model folder.
        name: Model name used in cache keys (default: the folder name).
        cache: Optional persistent cache; without one only a small in-memory LRU is used.
        batch_size: Encoding batch size.
        memory_items: Size of the in-memory LRU (repeated queries skip the model).
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        cache: EmbeddingCache | None = None,
        batch_size: int = 64,
        memory_items: int = 4096,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size!r}")
        self._path: Path | None = None
        self._model: Any = None
        if isinstance(model, (str, Path)):
            self._path = Path(model)
            default_name = self._path.name
        else:
            self._model = model
            default_name = _model_name(model)
        self.name = name or default_name
        self.cache = cache
        self.batch_size = batch_size
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_items = memory_items
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            from models.loading import load_sentence_embedder

            if self._path is None:  # pragma: no cover - constructor guarantees one
                raise ModelUnavailableError("SentenceEmbedder has neither a model nor a path")
            self._model = load_sentence_embedder(self._path)
        return self._model

    @property
    def dim(self) -> int:
        """Vector dimension of the model."""
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (cached ones are not recomputed).

        Args:
            texts: The texts.

        Returns:
            ``(len(texts), dim)`` float32 array with unit-norm rows.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [EmbeddingCache.key(self.name, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for k in keys:
                v = self._memory.get(k)
                if v is not None:
                    found[k] = v
                    self._memory.move_to_end(k)
        if self.cache is not None and len(found) < len(keys):
            found.update(self.cache.get_many([k for k in keys if k not in found]))
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in found and k not in todo:
                todo[k] = t
        if todo:
            vecs = self._encode(list(todo.values()))
            new = dict(zip(todo, vecs, strict=True))
            if self.cache is not None:
                self.cache.put_many(new)
            found.update(new)
        with self._lock:
            for k in keys:
                self._memory[k] = found[k]
                self._memory.move_to_end(k)
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Alias of :meth:`embed` (the ``kg.linking`` embedder signature)."""
        return self.embed(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return normalize_rows(out)


def _model_name(model: Any) -> str:
    """A stable name for a loaded model: its folder, or its class name as a last resort."""
    for attr in ("model_card_data", "_model_card_vars"):
        card = getattr(model, attr, None)
        name = getattr(card, "base_model", None) if card is not None else None
        if isinstance(name, str) and name:
            return name.rsplit("/", 1)[-1].lower()
    path = getattr(model, "_model_path", None) or getattr(model, "model_path", None)
    if isinstance(path, str) and path:
        return Path(path).name
    return type(model).__name__

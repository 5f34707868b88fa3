"""Lexical retrieval: BM25 (the ``bm25s`` library) over passages with stable integer keys, persisted.

``bm25s`` builds a static sparse matrix; adds and removes mark the index stale and
the next search rebuilds it (about 0.2 s per 10k short passages here), which keeps
incremental ingest simple and exact.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import numpy as np

from kgnlp.errors import ConfigurationError, StoreError, ValidationError
from kgnlp.files import atomic_dir

__all__ = ["BM25Index", "stem", "tokenize"]

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SUFFIXES = (
    ("ational", "ate"),
    ("ization", "ize"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("ies", "y"),
    ("ied", "y"),
    ("ing", ""),
    ("ed", ""),
    ("es", ""),
    ("ly", ""),
    ("s", ""),
)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN_PLUS as STOPWORDS_EN
    except ImportError:  # pragma: no cover - layout of older bm25s releases
        return frozenset()
    return frozenset(STOPWORDS_EN)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix-stripping stemmer ("cancelling" → "cancel", "refunds" → "refund").

    Args:
        word: A lower-case token.

    Returns:
        The stem (words of four letters or fewer are kept as they are).
    """
    if len(word) <= 4 or not word.isalpha():
        return word
    for suf, rep in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            w = word[: -len(suf)] + rep
            if suf in ("ing", "ed") and len(w) > 3 and w[-1] == w[-2] and w[-1] not in "sz":
                w = w[:-1]  # "shipped" → "ship"
            return w
    return word


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without English stopwords, stemmed.

    Args:
        text: Any text.

    Returns:
        The tokens, in order.
    """
    stop = _stopwords()
    return [stem(t) for t in _TOKEN.findall(text.lower().replace("\u2019", "'")) if t not in stop]


class BM25Index:
    """BM25 over texts keyed by int64 ids.

    Args:
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: A ``bm25s`` variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, method: str = "lucene") -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigurationError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1!r} b={b!r}")
        self.k1, self.b, self.method = k1, b, method
        self._texts: dict[int, str] = {}
        self._model: Any = None
        self._order: np.ndarray = np.zeros(0, dtype=np.int64)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, keys: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Add texts under new keys.

        Args:
            keys: Unique int64 keys not yet in the index.
            texts: One text per key.
        """
        ks = [int(k) for k in np.asarray(keys, dtype=np.int64).reshape(-1)]
        if len(ks) != len(texts):
            raise ValidationError(f"got {len(texts)} texts for {len(ks)} keys")
        dup = [k for k in ks if k in self._texts]
        if dup or len(set(ks)) != len(ks):
            raise ValidationError(f"keys already in the BM25 index or repeated: {dup[:5] or ks[:5]}")
        with self._lock:
            self._texts.update(zip(ks, texts, strict=True))
            self._model = None

    def remove(self, keys: Sequence[int] | np.ndarray) -> int:
        """Remove keys (absent ones are ignored); return how many were removed."""
        n = 0
        with self._lock:
            for k in np.asarray(keys, dtype=np.int64).reshape(-1):
                if self._texts.pop(int(k), None) is not None:
                    n += 1
            if n:
                self._model = None
        return n

    def keys(self) -> np.ndarray:
        """Live keys, sorted."""
        return np.array(sorted(self._texts), dtype=np.int64)

    def _ensure(self) -> Any:
        with self._lock:
            if self._model is None and self._texts:
                import bm25s

                order = np.array(sorted(self._texts), dtype=np.int64)
                # an empty document would crash bm25s; a placeholder token matches nothing real
                toks = [tokenize(self._texts[int(k)]) or ["\x00"] for k in order]
                model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
                model.index(toks, show_progress=False)
                self._model, self._order = model, order
            return self._model

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` texts by BM25 score (only texts sharing a term with the query).

        Args:
            query: Free text.
            k: Results wanted.

        Returns:
            ``(scores, keys)`` 1-d arrays, best first (possibly fewer than ``k``).
        """
        model = self._ensure()
        vocab = getattr(model, "vocab_dict", None) or {}
        toks = [t for t in tokenize(query) if t in vocab]
        if model is None or not toks or k < 1:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores = np.asarray(model.get_scores(toks), dtype=np.float32)
        kk = min(k, len(scores))
        top = np.argpartition(-scores, kk - 1)[:kk] if kk < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((self._order[top], -scores[top]))]
        top = top[scores[top] > 0]
        return scores[top], self._order[top]

    def save(self, path: Path) -> None:
        """Write the texts, the BM25 matrix (``bm25s`` format) and parameters into ``path`` atomically."""
        model = self._ensure()
        with atomic_dir(Path(path)) as tmp:
            if model is not None:
                model.save(str(tmp / "bm25s"), show_progress=False)
                np.save(tmp / "order.npy", self._order)
            with (tmp / "texts.jsonl").open("w", encoding="utf-8") as f:
                for k in sorted(self._texts):
                    f.write(json.dumps({"key": k, "text": self._texts[k]}, ensure_ascii=False) + "\n")
            (tmp / "meta.json").write_text(
                json.dumps(
                    {"kind": "bm25", "k1": self.k1, "b": self.b, "method": self.method, "count": len(self._texts)}
                )
            )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text())
            idx = cls(k1=meta["k1"], b=meta["b"], method=meta["method"])
            with (path / "texts.jsonl").open(encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"cannot read BM25 index {path}: {e}") from e
        if len(rows) != meta.get("count", len(rows)):
            raise StoreError(f"BM25 index {path} is incomplete: {len(rows)} of {meta['count']} texts")
        if rows:
            idx.add([r["key"] for r in rows], [r["text"] for r in rows])
            if (path / "bm25s").is_dir() and (path / "order.npy").exists():
                import bm25s

                try:
                    model = bm25s.BM25.load(str(path / "bm25s"), show_progress=False)
                    order = np.load(path / "order.npy")
                except (OSError, ValueError) as e:
                    raise StoreError(f"cannot read BM25 matrix {path}/bm25s: {e}") from e
                if np.array_equal(order, idx.keys()):
                    idx._model, idx._order = model, order
        return idx

"""Build what the customer-service app needs at start: the intent classifier (idempotent)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from apps.customer_service.intents import IntentClassifier
from kgnlp.errors import NotFoundError
from kgnlp.files import sha256_file

__all__ = ["DATA_DIR", "intents_dir", "load_intents", "read_bitext_rows", "sentence_encoder", "train_intents"]

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "retail"


def intents_dir(home: Path) -> Path:
    return Path(home) / "cs" / "intents"


def read_bitext_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a Bitext customer-support CSV (RFC 4180, CRLF inside quoted fields)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sentence_encoder(model: Any, batch_size: int = 64) -> Callable[[list[str]], np.ndarray]:
    """Wrap a SentenceTransformer as ``texts -> normalised float32 vectors``."""

    def encode(texts: list[str]) -> np.ndarray:
        vecs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    return encode


def train_intents(home: Path, embedder: Any, source: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Train the intent classifier on the shipped Bitext data; skip when it is up to date.

    Args:
        home: kgnlp home (the classifier goes to ``home/cs/intents``).
        embedder: a loaded SentenceTransformer.
        source: Bitext CSV (default: ``data/retail/bitext_customer_support.csv``).
        force: retrain even when up to date.

    Returns:
        ``{"status": "trained"|"unchanged", "examples", "intents", "seconds"}``.
    """
    src = source or DATA_DIR / "bitext_customer_support.csv"
    if not src.is_file():
        raise NotFoundError(f"Bitext data not found at {src}")
    out = intents_dir(home)
    digest = sha256_file(src)
    meta = _read_meta(out / "meta.json")
    if not force and meta is not None and meta.get("source_sha256") == digest:
        return {"status": "unchanged", **meta}
    t0 = time.perf_counter()
    rows = read_bitext_rows(src)
    clf = IntentClassifier.train(
        sentence_encoder(embedder), [r["instruction"] for r in rows], [r["intent"] for r in rows]
    )
    meta = {"source": str(src), "source_sha256": digest, "examples": len(rows), "intents": len(clf.labels),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    clf.save(out, meta=meta)  # weights, labels and meta.json swapped in together
    return {"status": "trained", **meta}


def _read_meta(path: Path) -> dict[str, Any] | None:
    """The recorded ``meta.json``, or None when it is missing or unreadable (then the classifier is retrained)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def load_intents(home: Path, embedder: Any) -> IntentClassifier:
    return IntentClassifier.load(intents_dir(home), sentence_encoder(embedder))

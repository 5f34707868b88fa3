"""The served recommender: frozen base models + side features + the learned ranker.

A user is a :class:`UserContext` (their history, per-model vectors, a text profile and a tag
profile); :meth:`Recommender.features` turns contexts into ``(users, items, F)`` feature arrays,
:meth:`Recommender.score` ranks every item. Saved as ``models.npz`` + ``side.npz`` + ``ranker.json``.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from apps.recommend.data import Catalogue, Interactions
from apps.recommend.models.embedding import EmbeddingModel
from apps.recommend.ranker import LogisticRanker
from kgnlp.errors import NotFoundError
from kgnlp.files import atomic_write_bytes, atomic_write_json

__all__ = ["EMBEDDING_MODELS", "FEATURES", "Recommender", "UserContext", "model_info", "recency_scores"]

EMBEDDING_MODELS = ("bpr", "lightgcn", "kg", "text_tower")
FEATURES = [*EMBEDDING_MODELS, "text_sim", "popularity", "tag_overlap", "recency"]


@dataclass
class UserContext:
    """What the recommender knows about one user at request time."""

    history: np.ndarray  # item indices, positives
    vectors: dict[str, np.ndarray]  # model -> (d,)
    text_profile: np.ndarray  # (k,) mean text vector of the history, normalised
    tag_profile: np.ndarray  # (T,) normalised tag counts of the history
    skips: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    user: int | None = None  # catalogue index when known


def recency_scores(inter: Interactions, n_items: int, half_life_days: float = 30.0) -> np.ndarray:
    """``2^(−age/half_life)`` of each item's latest event (0 for items never seen or without times)."""
    out = np.zeros(n_items, np.float32)
    if len(inter) == 0 or not np.any(inter.ts):
        return out
    last = np.full(n_items, -np.inf)
    np.maximum.at(last, inter.items, inter.ts)
    age = inter.ts.max() - last
    seen = np.isfinite(last)
    out[seen] = np.power(2.0, -age[seen] / half_life_days)
    return out


class Recommender:
    """Base models and side features over one catalogue; the ranker may be attached later.

    Args:
        catalogue: the catalogue (item ids, names, tags, KG).
        models: frozen embedding models by name (see :data:`EMBEDDING_MODELS`).
        popularity: ``(n_items,)`` log popularity over the training events.
        text: ``(n_items, k)`` normalised item text vectors.
        recency: ``(n_items,)`` recency scores.
        ranker: the learned ranker (None until fitted).
    """

    def __init__(self, catalogue: Catalogue, models: dict[str, EmbeddingModel], popularity: np.ndarray,
                 text: np.ndarray, recency: np.ndarray, ranker: LogisticRanker | None = None) -> None:  # fmt: skip
        self.catalogue = catalogue
        self.models = models
        self.popularity = popularity.astype(np.float32)
        self.text = text.astype(np.float32)
        self.recency = recency.astype(np.float32)
        self.ranker = ranker
        self.tags = sorted({t for tags in catalogue.item_tags for t in tags})
        tag_index = {t: k for k, t in enumerate(self.tags)}
        from scipy.sparse import csr_matrix

        rows, cols, vals = [], [], []
        for i, tags in enumerate(catalogue.item_tags):
            uniq = {tag_index[t] for t in tags}
            for t in uniq:
                rows.append(i)
                cols.append(t)
                vals.append(1.0 / np.sqrt(len(uniq)))
        # (items, tags), rows L2-normalised; sparse: ~10 tags per item
        self.tag_matrix = csr_matrix(
            (np.array(vals, np.float32), (rows, cols)), shape=(catalogue.n_items, max(1, len(self.tags)))
        )

    # -- users ------------------------------------------------------------------------------
    def context(self, history: np.ndarray, user: int | None = None, skips: np.ndarray | None = None,
                fold_in: bool = False) -> UserContext:  # fmt: skip
        """A user's context from their history.

        Args:
            history: played item indices (order irrelevant).
            user: the catalogue user index (trained vectors are used when known and not ``fold_in``).
            skips: skipped item indices (fold-in targets −1).
            fold_in: recompute the vectors from the history even for a known user (after feedback).
        """
        history = np.asarray(history, np.int64)
        skips = np.zeros(0, np.int64) if skips is None else np.asarray(skips, np.int64)
        vectors: dict[str, np.ndarray] = {}
        for name, m in self.models.items():
            if user is not None and not fold_in and user < len(m.users):
                vectors[name] = m.users[user]
            else:
                items = np.concatenate([history, skips])
                targets = np.concatenate([np.ones(len(history)), -np.ones(len(skips))])
                vectors[name] = m.fold_in(items, targets)
        tp = self.text[history].mean(0) if len(history) else np.zeros(self.text.shape[1], np.float32)
        n_tags = self.tag_matrix.shape[1]
        gp = np.asarray(self.tag_matrix[history].sum(0)).ravel() if len(history) else np.zeros(n_tags, np.float32)
        tp = tp / max(float(np.linalg.norm(tp)), 1e-8)
        gp = gp / max(float(np.linalg.norm(gp)), 1e-8)
        return UserContext(history, vectors, tp.astype(np.float32), gp.astype(np.float32), skips, user)

    # -- scoring ----------------------------------------------------------------------------
    def features(self, ctxs: list[UserContext]) -> np.ndarray:
        """Feature arrays ``(len(ctxs), n_items, len(FEATURES))`` (float32)."""
        b, n = len(ctxs), self.catalogue.n_items
        cols = []
        for name in EMBEDDING_MODELS:
            m = self.models[name]
            cols.append(m.scores(np.stack([c.vectors[name] for c in ctxs])))
        cols.append(np.stack([c.text_profile for c in ctxs]) @ self.text.T)
        cols.append(np.broadcast_to(self.popularity, (b, n)))
        cols.append(np.asarray(self.tag_matrix @ np.stack([c.tag_profile for c in ctxs]).T).T)
        cols.append(np.broadcast_to(self.recency, (b, n)))
        return np.stack(cols, -1).astype(np.float32)

    def model_scores(self, name: str, ctxs: list[UserContext]) -> np.ndarray:
        """``(len(ctxs), n_items)`` scores of one model (a feature name or ``ranker``)."""
        x = self.features(ctxs)
        if name == "ranker":
            if self.ranker is None:
                raise NotFoundError("the ranker is not fitted")
            return self.ranker.logits(x)
        return np.ascontiguousarray(x[..., FEATURES.index(name)])

    def score(self, ctx: UserContext) -> np.ndarray:
        """Ranker logits of every item for one user: ``(n_items,)``.

        Same values as ``model_scores("ranker", [ctx])[0]``, computed as a weighted sum of the
        feature columns without materialising the ``(items, F)`` array (the serving path).
        """
        r = self.ranker
        if r is None:
            raise NotFoundError("the ranker is not fitted")
        a = r.weights / r.scale
        out = np.full(self.catalogue.n_items, r.bias - float(np.dot(a, r.mean)), np.float32)
        for k, name in enumerate(EMBEDDING_MODELS):
            out += a[k] * (self.models[name].items @ ctx.vectors[name])
        k = len(EMBEDDING_MODELS)
        out += a[k] * (self.text @ ctx.text_profile)
        out += a[k + 1] * self.popularity + a[k + 3] * self.recency
        out += a[k + 2] * np.asarray(self.tag_matrix @ ctx.tag_profile).ravel()
        return out

    def item_vectors(self) -> np.ndarray:
        """Normalised item vectors for item–item similarity: KG model ⊕ text tower ⊕ raw text."""
        parts = []
        for name in ("kg", "text_tower"):
            v = self.models[name].items
            parts.append(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-8))
        parts.append(self.text)
        v = np.concatenate(parts, 1)
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-8)).astype(np.float32)

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write the catalogue, models, side features, ranker and ``meta.json`` into ``folder``."""
        folder = Path(folder)
        self.catalogue.save(folder)
        arrays = {}
        for name, m in self.models.items():
            arrays[f"{name}.users"], arrays[f"{name}.items"] = m.users, m.items
        side = {"popularity": self.popularity, "text": self.text, "recency": self.recency}
        for fname, payload in (("models.npz", arrays), ("side.npz", side)):
            buf = io.BytesIO()
            np.savez(buf, **payload)
            atomic_write_bytes(folder / fname, buf.getvalue())
        if self.ranker is not None:
            self.ranker.save(folder / "ranker.json")
        info = {name: m.info for name, m in self.models.items()}
        atomic_write_json(folder / "meta.json", {**meta, "models": info, "features": FEATURES})

    @classmethod
    def load(cls, folder: Path) -> Recommender:
        """Load what :meth:`save` wrote.

        Raises:
            NotFoundError: the folder holds no trained recommender.
        """
        folder = Path(folder)
        if not (folder / "models.npz").is_file() or not (folder / "ranker.json").is_file():
            raise NotFoundError(f"no trained recommender in {folder}")
        catalogue = Catalogue.load(folder)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        models = {}
        with np.load(folder / "models.npz", allow_pickle=False) as z:
            for name in EMBEDDING_MODELS:
                models[name] = EmbeddingModel(
                    name, z[f"{name}.users"], z[f"{name}.items"], meta["models"].get(name, {})
                )
        with np.load(folder / "side.npz", allow_pickle=False) as z:
            pop, text, rec = z["popularity"], z["text"], z["recency"]
        return cls(catalogue, models, pop, text, rec, LogisticRanker.load(folder / "ranker.json"))


def model_info(folder: Path) -> dict[str, Any]:
    """What ``/health/ready`` shows about a trained model: version, when it was trained, on how much."""
    meta = json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
    info = {k: meta.get(k) for k in ("version", "trained_at", "interactions", "train_seconds")}
    if info["version"] is None and meta.get("fingerprint"):
        info["version"] = str(meta["fingerprint"])[:12]
    if info["trained_at"]:
        info["trained_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(info["trained_at"])))
    return info

"""Fitting: base models on training events, then the ranker on held-out validation rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from apps.recommend.data import Catalogue, Interactions
from apps.recommend.models.base import TrainConfig, train_bpr
from apps.recommend.models.bpr import BPRMF
from apps.recommend.models.kgat import KGAttention, build_ckg
from apps.recommend.models.lightgcn import LightGCNRec
from apps.recommend.models.popularity import popularity_scores
from apps.recommend.models.text import TextTower
from apps.recommend.ranker import LogisticRanker
from apps.recommend.recommender import FEATURES, Recommender, UserContext, recency_scores

__all__ = ["FitConfig", "contexts_for", "entity_init_from_graph", "fit_base", "fit_ranker_labeled", "fit_ranker_topk"]

log = logging.getLogger("kgnlp.recommend")


@dataclass
class FitConfig:
    """Sizes and budgets of the base models."""

    dim: int = 64
    layers: int = 2
    seed: int = 0
    bpr: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=80, lr=0.01, reg=1e-4))
    lightgcn: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=80, lr=0.01, reg=1e-4))
    kg: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=80, lr=0.01, reg=1e-4))
    text: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=80, lr=0.01, reg=1e-4))
    entity_init: np.ndarray | None = None  # pretrained KG entity vectors (n_entities, k)
    threads: int | None = 1  # torch threads while training: these models are small, more threads only contend

    def scaled(self, factor: float) -> FitConfig:
        """A copy with every model's epochs multiplied by ``factor`` (≥ 1 epoch)."""
        import copy

        out = copy.deepcopy(self)
        for tc in (out.bpr, out.lightgcn, out.kg, out.text):
            tc.epochs = max(1, int(tc.epochs * factor))
        return out


def fit_base(catalogue: Catalogue, train: Interactions, text: np.ndarray, cfg: FitConfig,
             report: Callable[[str], None] = log.info) -> Recommender:  # fmt: skip
    """Train popularity, BPR-MF, LightGCN, the KG model and the text tower on ``train``.

    Args:
        catalogue: items, users, KG.
        train: training events only (validation/test events must not be here).
        text: ``(n_items, k)`` item text vectors.
        cfg: sizes and budgets.
        report: progress callback.

    Returns:
        A :class:`Recommender` without a ranker; each model's ``info`` holds its training time.
    """
    before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit_base(catalogue, train, text, cfg, report)
    finally:
        torch.set_num_threads(before)


def _fit_base(catalogue: Catalogue, train: Interactions, text: np.ndarray, cfg: FitConfig,
              report: Callable[[str], None]) -> Recommender:  # fmt: skip
    torch.manual_seed(cfg.seed)
    nu, ni = catalogue.n_users, catalogue.n_items
    # train_bpr seeds from its TrainConfig: offset those by cfg.seed so that FitConfig.seed varies every model
    # (seed 0 keeps the configured seeds)
    from dataclasses import replace

    cfg = replace(cfg, **{k: replace(getattr(cfg, k), seed=getattr(cfg, k).seed + cfg.seed)
                          for k in ("bpr", "lightgcn", "kg", "text")})  # fmt: skip
    models = {}
    t0 = time.perf_counter()
    models["bpr"] = train_bpr(BPRMF(nu, ni, cfg.dim), train, ni, cfg.bpr, "bpr")
    report(f"bpr: {models['bpr'].info}")
    models["lightgcn"] = train_bpr(LightGCNRec(nu, ni, train, cfg.dim, cfg.layers), train, ni, cfg.lightgcn, "lightgcn")
    report(f"lightgcn: {models['lightgcn'].info}")
    edge_index, edge_type, n_rel = build_ckg(nu, train, catalogue.triples)
    kg = KGAttention(nu, ni, catalogue.n_entities, edge_index, edge_type, n_rel, cfg.dim, cfg.layers, cfg.entity_init)
    models["kg"] = train_bpr(kg, train, ni, cfg.kg, "kg")
    report(f"kg: {models['kg'].info}")
    models["text_tower"] = train_bpr(TextTower(nu, text, cfg.dim), train, ni, cfg.text, "text_tower")
    report(f"text_tower: {models['text_tower'].info}")
    rec = Recommender(catalogue, models, popularity_scores(train, ni), text, recency_scores(train, ni))
    report(f"base models trained in {time.perf_counter() - t0:.1f}s")
    return rec


def entity_init_from_graph(catalogue: Catalogue, graph_dir: Path) -> np.ndarray:
    """KG entity vectors trained by ``kgnlp kg train-embeddings``, in catalogue order.

    Train them on the catalogue's own graph (``kgnlp kg train-embeddings --graph recommend-<name>``),
    whose ids are the catalogue's; entities the embeddings lack get zero rows. Pass the result as
    ``FitConfig.entity_init``.

    Raises:
        NotFoundError: the graph has no embeddings.
    """
    from kg.embeddings.artifacts import EmbeddingArtifact, find_embeddings

    art = EmbeddingArtifact.load(find_embeddings(graph_dir), with_model=False)
    out = np.zeros((catalogue.n_entities, art.vectors.shape[1]), np.float32)
    for k, eid in enumerate(catalogue.entity_ids):
        if eid in art:
            out[k] = art.vector(eid)
    return out


def contexts_for(rec: Recommender, train: Interactions) -> list[UserContext]:
    """Every catalogue user's context from their training history (trained vectors)."""
    hist = train.by_user(rec.catalogue.n_users)
    return [rec.context(h, user=u) for u, h in enumerate(hist)]


def _rows_features(rec: Recommender, ctxs: list[UserContext], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    out = np.zeros((len(users), len(FEATURES)), np.float32)
    order = np.argsort(users, kind="stable")
    us = users[order]
    starts = np.flatnonzero(np.r_[True, us[1:] != us[:-1]])
    ends = np.r_[starts[1:], len(us)]
    chunk: list[tuple[int, int]] = []

    def flush() -> None:
        if not chunk:
            return
        x = rec.features([ctxs[int(us[a])] for a, _ in chunk])
        for k, (a, b) in enumerate(chunk):
            out[order[a:b]] = x[k, items[order[a:b]]]
        chunk.clear()

    for a, b in zip(starts, ends, strict=True):
        chunk.append((int(a), int(b)))
        if len(chunk) == 128:
            flush()
    flush()
    return out


def labeled_features(rec: Recommender, ctxs: list[UserContext], rows: np.ndarray) -> np.ndarray:
    """Feature rows for labelled ``(user, item, label)`` rows: ``(n, F)``."""
    return _rows_features(rec, ctxs, rows[:, 0], rows[:, 1])


def fit_ranker_labeled(rec: Recommender, ctxs: list[UserContext], valid: np.ndarray) -> LogisticRanker:
    """Fit the ranker on labelled validation rows (KGCN protocol) and attach it."""
    rec.ranker = LogisticRanker.fit(FEATURES, labeled_features(rec, ctxs, valid), valid[:, 2])
    return rec.ranker


def fit_ranker_topk(rec: Recommender, ctxs: list[UserContext], valid: Interactions, n_hard: int = 5,
                    n_uniform: int = 60, seed: int = 0) -> LogisticRanker:  # fmt: skip
    """Fit the pairwise ranker for top-K lists on validation events and attach it.

    For each validation user, every held-out item is paired with negatives: items from the top
    200 of the unweighted sum of standardised base-model scores (hard: what a list actually
    contains) and uniform items. Training items are excluded, as they are at ranking time.
    """
    rng = np.random.default_rng(seed)
    pos_by_user = valid.by_user(rec.catalogue.n_users)
    users = [u for u, p in enumerate(pos_by_user) if len(p)]
    rows: list[tuple[int, int]] = []
    pairs: list[tuple[int, int]] = []
    for s in range(0, len(users), 128):
        batch = users[s : s + 128]
        x = rec.features([ctxs[u] for u in batch])
        z = (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-8)
        base = z[..., : len(FEATURES) - 1].sum(-1)
        for k, u in enumerate(batch):
            sc = base[k].copy()
            sc[ctxs[u].history] = -np.inf
            pos = set(pos_by_user[u].tolist())
            top_n = min(200, rec.catalogue.n_items - 1)
            top = [i for i in np.argpartition(-sc, top_n)[:top_n].tolist() if i not in pos and np.isfinite(sc[i])]
            hard = rng.choice(top, size=min(n_hard, len(top)), replace=False).tolist() if top else []
            uni = [i for i in rng.integers(0, rec.catalogue.n_items, n_uniform).tolist() if i not in pos]
            negs = list(dict.fromkeys([*hard, *uni]))
            p_rows = [len(rows) + j for j in range(len(pos))]
            rows += [(u, i) for i in pos]
            n_rows = [len(rows) + j for j in range(len(negs))]
            rows += [(u, int(i)) for i in negs]
            pairs += [(a, b) for a in p_rows for b in n_rows]
    arr = np.array(rows, np.int64)
    pr = np.array(pairs, np.int64)
    x = _rows_features(rec, ctxs, arr[:, 0], arr[:, 1])
    rec.ranker = LogisticRanker.fit_pairwise(FEATURES, x, pr[:, 0], pr[:, 1])
    return rec.ranker

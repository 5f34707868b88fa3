"""The shared part of the learned models: BPR training over full user/item matrices.

Every learned model is a ``torch.nn.Module`` whose ``forward()`` returns the full ``(users, d)``
and ``(items, d)`` matrices (graph models propagate inside it); a score is a dot product. After
training the matrices are frozen into an :class:`EmbeddingModel` (numpy), which is what is served.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from apps.recommend.data import Interactions
from apps.recommend.models.embedding import EmbeddingModel

__all__ = ["EmbeddingModel", "TrainConfig", "train_bpr"]  # EmbeddingModel re-exported


@dataclass
class TrainConfig:
    """BPR training settings (defaults fit Last.fm-sized data on 2 CPU cores)."""

    epochs: int = 60
    batch_size: int = 2048
    lr: float = 0.01
    reg: float = 1e-4
    seed: int = 0
    max_seconds: float = 120.0


def _negatives(rng: np.random.Generator, users: np.ndarray, n_items: int, known: np.ndarray) -> np.ndarray:
    """Uniform negatives, resampled (twice) where they hit a training positive."""
    neg = rng.integers(0, n_items, len(users))
    for _ in range(2):
        hit = np.isin(users * n_items + neg, known, assume_unique=False)
        if not hit.any():
            break
        neg[hit] = rng.integers(0, n_items, int(hit.sum()))
    return neg


def train_bpr(model: nn.Module, train: Interactions, n_items: int, cfg: TrainConfig, name: str) -> EmbeddingModel:
    """Train ``model`` with the BPR loss on distinct training pairs and freeze its vectors.

    Args:
        model: a module whose ``forward()`` returns ``(user_matrix, item_matrix)``.
        train: positive training events.
        n_items: item count.
        cfg: epochs, batch, learning rate, L2 (on the batch's vectors), seed, time cap.
        name: model name for the frozen result.

    Returns:
        The frozen model with ``info`` (epochs run, seconds, last loss).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pairs = np.unique(np.stack([train.users, train.items], 1), axis=0)
    known = np.unique(pairs[:, 0] * n_items + pairs[:, 1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0, loss_v, epoch = time.perf_counter(), float("nan"), 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):  # noqa: B007
        perm = rng.permutation(len(pairs))
        total = 0.0
        for s in range(0, len(perm), cfg.batch_size):
            b = pairs[perm[s : s + cfg.batch_size]]
            u, i = torch.from_numpy(b[:, 0]), torch.from_numpy(b[:, 1])
            j = torch.from_numpy(_negatives(rng, b[:, 0], n_items, known))
            users, items = model()
            eu, ei, ej = users[u], items[i], items[j]
            x = (eu * ei).sum(-1) - (eu * ej).sum(-1)
            reg = (eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / len(b)
            loss = -torch.nn.functional.logsigmoid(x).mean() + cfg.reg * reg
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        loss_v = total / len(pairs)
        if time.perf_counter() - t0 > cfg.max_seconds:
            break
    model.eval()
    with torch.no_grad():
        users, items = model()
    return EmbeddingModel(
        name,
        users.detach().numpy().astype(np.float32),
        items.detach().numpy().astype(np.float32),
        {"epochs": epoch, "seconds": round(time.perf_counter() - t0, 1), "loss": round(loss_v, 4)},
    )

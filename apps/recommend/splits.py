"""Leakage-free evaluation splits.

* :func:`kgcn_split` — KGCN's CTR protocol: every play is a positive, each user gets as many
  negatives as positives (sampled without replacement from the items they never played), and the
  labelled rows are split 6:2:2 at random with a fixed seed.
* :func:`per_user_split` — top-K protocol: each user's distinct items are split 60/20/20
  (train/valid/test); users with fewer than 3 items keep all of them in train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apps.recommend.data import Interactions

__all__ = ["LabeledSplit", "TopKSplit", "kgcn_split", "per_user_split"]


@dataclass
class LabeledSplit:
    """Labelled ``(user, item, label)`` rows for train/valid/test, and the training positives."""

    train: np.ndarray  # (n, 3) int64
    valid: np.ndarray
    test: np.ndarray

    def train_positives(self) -> Interactions:
        """Training rows with label 1, as interactions (what the models may learn from)."""
        pos = self.train[self.train[:, 2] == 1]
        n = len(pos)
        return Interactions(pos[:, 0].copy(), pos[:, 1].copy(), np.ones(n, np.float32), np.zeros(n))


@dataclass
class TopKSplit:
    """Per-user train/valid/test interactions."""

    train: Interactions
    valid: Interactions
    test: Interactions


def kgcn_split(
    inter: Interactions, n_items: int, seed: int = 555, ratios: tuple[float, float] = (0.2, 0.2)
) -> LabeledSplit:
    """KGCN's protocol: one sampled negative per positive, then a 6:2:2 row split.

    Args:
        inter: positive events (duplicates of a pair are collapsed).
        n_items: the item count (negatives come from ``range(n_items)``).
        seed: the random seed (negatives and split).
        ratios: (valid, test) fractions.

    Returns:
        The labelled split.
    """
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([inter.users, inter.items], 1), axis=0)
    rows = []
    all_items = np.arange(n_items)
    for u in np.unique(pairs[:, 0]):
        pos = pairs[pairs[:, 0] == u, 1]
        unwatched = np.setdiff1d(all_items, pos, assume_unique=True)
        neg = rng.choice(unwatched, size=min(len(pos), len(unwatched)), replace=False)
        rows.append(np.stack([np.full(len(pos), u), pos, np.ones(len(pos), np.int64)], 1))
        rows.append(np.stack([np.full(len(neg), u), neg, np.zeros(len(neg), np.int64)], 1))
    data = np.concatenate(rows).astype(np.int64)
    perm = rng.permutation(len(data))
    n_valid, n_test = int(len(data) * ratios[0]), int(len(data) * ratios[1])
    valid, test, train = perm[:n_valid], perm[n_valid : n_valid + n_test], perm[n_valid + n_test :]
    return LabeledSplit(data[train], data[valid], data[test])


def per_user_split(inter: Interactions, seed: int = 0, ratios: tuple[float, float] = (0.2, 0.2)) -> TopKSplit:
    """Split each user's distinct items into train/valid/test (leave-out per user).

    Args:
        inter: positive events; a pair seen several times goes to one side only.
        seed: the random seed.
        ratios: (valid, test) fractions per user (at least one test item for users with ≥ 3 items).

    Returns:
        The split; every pair is in exactly one part.
    """
    rng = np.random.default_rng(seed)
    pairs, first = np.unique(np.stack([inter.users, inter.items], 1), axis=0, return_index=True)
    side = np.zeros(len(pairs), np.int8)  # 0 train, 1 valid, 2 test
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    ends = np.r_[starts[1:], len(pairs)]
    for s, e in zip(starts, ends, strict=True):
        n = e - s
        if n < 3:
            continue
        n_test = max(1, round(n * ratios[1])) if ratios[1] > 0 else 0
        n_valid = max(1, round(n * ratios[0])) if n >= 4 and ratios[0] > 0 else 0
        idx = s + rng.permutation(n)
        side[idx[:n_test]] = 2
        side[idx[n_test : n_test + n_valid]] = 1
    key = {(u, i): k for k, (u, i) in enumerate(pairs.tolist())}
    row_side = np.array([side[key[(u, i)]] for u, i in zip(inter.users.tolist(), inter.items.tolist(), strict=True)])
    del first
    return TopKSplit(inter.subset(row_side == 0), inter.subset(row_side == 1), inter.subset(row_side == 2))

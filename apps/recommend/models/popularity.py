"""The popularity baseline: distinct training users per item."""

from __future__ import annotations

import numpy as np

from apps.recommend.data import Interactions

__all__ = ["popularity_scores"]


def popularity_scores(train: Interactions, n_items: int) -> np.ndarray:
    """``log(1 + distinct users)`` per item over the training events: ``(n_items,)`` float32."""
    if len(train) == 0:
        return np.zeros(n_items, np.float32)
    pairs = np.unique(np.stack([train.users, train.items], 1), axis=0)
    return np.log1p(np.bincount(pairs[:, 1], minlength=n_items)).astype(np.float32)

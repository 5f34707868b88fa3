"""Frozen user and item vectors (numpy only: what the service loads, without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EmbeddingModel"]


@dataclass
class EmbeddingModel:
    """Frozen user and item vectors; ``score(u, i) = users[u] · items[i]``."""

    name: str
    users: np.ndarray  # (n_users, d) float32
    items: np.ndarray  # (n_items, d) float32
    info: dict[str, Any] = field(default_factory=dict)

    def scores(self, user_vectors: np.ndarray) -> np.ndarray:
        """Scores of every item for ``(b, d)`` user vectors: ``(b, n_items)``."""
        return np.asarray(user_vectors @ self.items.T, dtype=np.float32)

    def fold_in(self, items: np.ndarray, targets: np.ndarray | None = None, lam: float = 1.0) -> np.ndarray:
        """A user vector from their items only (ridge regression onto the frozen item vectors).

        Solves ``min_u Σ (y_i − u·v_i)² + λ·n·|u|²`` with ``y_i = 1`` for plays (``targets`` may give
        −1 for skips), so new and anonymous users get vectors without retraining.

        Args:
            items: item indices of the history.
            targets: per item target (default 1).
            lam: ridge strength (scaled by the history length).

        Returns:
            ``(d,)`` float32 user vector (zeros for an empty history).
        """
        d = self.items.shape[1]
        if len(items) == 0:
            return np.zeros(d, np.float32)
        v = self.items[items].astype(np.float64)
        y = np.ones(len(items)) if targets is None else np.asarray(targets, np.float64)
        a = v.T @ v + lam * max(1, len(items)) * np.eye(d) * float(np.mean(np.sum(v * v, 1)) / d + 1e-6)
        return np.linalg.solve(a, v.T @ y).astype(np.float32)

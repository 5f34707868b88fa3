"""The final ranker: a standardised logistic regression over the models' scores and simple features.

Learned on validation rows (never on the rows the base models trained on, never on test rows);
saved as JSON (feature names, means, scales, weights) — no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kgnlp.errors import NotFoundError, ValidationError
from kgnlp.files import atomic_write_json

__all__ = ["LogisticRanker"]


@dataclass
class LogisticRanker:
    """``p = σ(b + Σ_f w_f · (x_f − μ_f) / s_f)`` over named features."""

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 0.5

    @classmethod
    def fit(cls, features: list[str], x: np.ndarray, y: np.ndarray, c: float = 1.0) -> LogisticRanker:
        """Fit on ``(n, F)`` feature rows and 0/1 labels (L2-regularised, sklearn lbfgs).

        Raises:
            ValidationError: shapes disagree or only one class is present.
        """
        from sklearn.linear_model import LogisticRegression

        if x.ndim != 2 or x.shape[1] != len(features) or len(x) != len(y):
            raise ValidationError(f"ranker rows must be (n, {len(features)}) with n labels, got {x.shape}")
        if len(np.unique(y)) < 2:
            raise ValidationError("ranker training needs positive and negative rows")
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale < 1e-8] = 1.0
        lr = LogisticRegression(C=c, max_iter=1000)
        lr.fit((x - mean) / scale, y)
        return cls(list(features), mean.astype(np.float32), scale.astype(np.float32),
                   lr.coef_[0].astype(np.float32), float(lr.intercept_[0]))  # fmt: skip

    @classmethod
    def fit_pairwise(cls, features: list[str], x: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                     c: float = 1.0) -> LogisticRanker:  # fmt: skip
        """Fit a pairwise (RankNet-style) ranker: ``σ(w · (x_pos − x_neg))`` should be 1.

        Args:
            features: feature names.
            x: ``(n, F)`` feature rows.
            pos: indices into ``x`` of the preferred row of each pair.
            neg: indices of the other row.
            c: inverse L2 strength.

        Returns:
            A ranker whose logits order items (its bias is 0; probabilities are not calibrated).
        """
        from sklearn.linear_model import LogisticRegression

        if len(pos) == 0 or len(pos) != len(neg):
            raise ValidationError("pairwise ranker training needs matching, non-empty pair lists")
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale < 1e-8] = 1.0
        d = (x[pos] - x[neg]) / scale
        lr = LogisticRegression(C=c, max_iter=1000, fit_intercept=False)
        lr.fit(np.concatenate([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))])
        return cls(list(features), mean.astype(np.float32), scale.astype(np.float32),
                   lr.coef_[0].astype(np.float32), 0.0)  # fmt: skip

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Decision values for ``(..., F)`` feature arrays."""
        return np.asarray(((x - self.mean) / self.scale) @ self.weights + self.bias, dtype=np.float32)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for ``(..., F)`` feature arrays."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(x))), dtype=np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"features": self.features, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias, "threshold": self.threshold}  # fmt: skip

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.as_dict())

    @classmethod
    def load(cls, path: Path) -> LogisticRanker:
        if not Path(path).is_file():
            raise NotFoundError(f"no ranker at {path}")
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["features"], np.array(d["mean"], np.float32), np.array(d["scale"], np.float32),
                   np.array(d["weights"], np.float32), float(d["bias"]), float(d.get("threshold", 0.5)))  # fmt: skip

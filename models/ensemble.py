"""Ensembles (model fusion) of classifiers; each ensemble is itself a ``Classifier``.

- ``MeanEnsemble``: average of member probabilities.
- ``WeightedEnsemble``: convex weights fit on validation data (minimum log-loss).
- ``StackingEnsemble``: a logistic-regression meta-model on member probabilities; fit it on
  out-of-fold predictions (``out_of_fold_proba``) or on a held-out split, never on the
  members' own training data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgnlp.errors import ConfigurationError
from kgnlp.files import atomic_write_json

if TYPE_CHECKING:
    import numpy as np

    from models.classify import Classifier

__all__ = ["MeanEnsemble", "StackingEnsemble", "WeightedEnsemble", "ensemble_runs", "out_of_fold_proba"]


def _check(members: Sequence[Classifier]) -> list[str]:
    if not members:
        raise ConfigurationError("members: an ensemble needs at least one classifier")
    labels = list(members[0].labels)
    for m in members[1:]:
        if list(m.labels) != labels:
            raise ConfigurationError(f"members: label sets differ ({labels[:3]}… vs {list(m.labels)[:3]}…)")
    return labels


class MeanEnsemble:
    """Average of member probabilities (weights, when given, are normalised to sum to 1)."""

    def __init__(self, members: Sequence[Classifier], weights: Sequence[float] | None = None) -> None:
        self.members = list(members)
        self.labels = _check(self.members)
        if weights is not None and (len(weights) != len(self.members) or min(weights) < 0 or sum(weights) <= 0):
            raise ConfigurationError(f"weights: need {len(self.members)} non-negative values, got {list(weights)}")
        w = list(weights) if weights is not None else [1.0] * len(self.members)
        self.weights = [x / sum(w) for x in w]

    def combine(self, member_proba: Sequence[np.ndarray]) -> np.ndarray:
        """Fuse precomputed member probabilities."""
        return sum(w * p for w, p in zip(self.weights, member_proba, strict=True))  # type: ignore[return-value]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.combine([m.predict_proba(texts) for m in self.members])


class WeightedEnsemble(MeanEnsemble):
    """Weighted mean with weights fit on validation data by minimising log-loss (softmax-parametrised)."""

    def fit(self, member_proba: Sequence[np.ndarray], y: Sequence[int], steps: int = 300) -> WeightedEnsemble:
        """Fit the weights.

        Args:
            member_proba: each member's ``(n, C)`` validation probabilities.
            y: true label ids.
            steps: LBFGS-free Adam steps on the weight logits.

        Returns:
            ``self``.
        """
        import torch

        P = torch.tensor(__import__("numpy").stack(member_proba), dtype=torch.float64)  # (M, n, C)
        target = torch.as_tensor(list(y))
        theta = torch.zeros(len(member_proba), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.1)
        for _ in range(steps):
            w = torch.softmax(theta, 0)
            mix = torch.einsum("m,mnc->nc", w, P).clamp_min(1e-12)
            loss = -mix.log()[torch.arange(len(target)), target].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.weights = torch.softmax(theta, 0).tolist()
        return self


class StackingEnsemble:
    """Logistic regression on the concatenated member probabilities."""

    def __init__(self, members: Sequence[Classifier], C: float = 1.0) -> None:
        self.members = list(members)
        self.labels = _check(self.members)
        self.C = C
        self.meta: Any = None

    def fit(self, member_proba: Sequence[np.ndarray], y: Sequence[int]) -> StackingEnsemble:
        """Fit the meta-model on out-of-fold (or held-out) member probabilities."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        X = np.log(np.clip(np.concatenate(member_proba, axis=1), 1e-7, 1.0))
        self.meta = LogisticRegression(C=self.C, max_iter=2000).fit(X, np.asarray(y))
        return self

    def combine(self, member_proba: Sequence[np.ndarray]) -> np.ndarray:
        import numpy as np

        if self.meta is None:
            raise ConfigurationError("StackingEnsemble: call fit() before predicting")
        X = np.log(np.clip(np.concatenate(member_proba, axis=1), 1e-7, 1.0))
        out = np.zeros((X.shape[0], len(self.labels)))
        out[:, self.meta.classes_] = self.meta.predict_proba(X)  # classes absent from fit data get 0
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.combine([m.predict_proba(texts) for m in self.members])


def out_of_fold_proba(
    fit_member: Callable[[list[str], list[int]], Classifier],
    texts: Sequence[str],
    y: Sequence[int],
    k: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold probabilities: each text is scored by a member trained without it.

    Args:
        fit_member: ``(texts, label ids) -> Classifier`` trains one member.
        texts: all training texts.
        y: their label ids.
        k: folds.
        seed: fold shuffling seed.

    Returns:
        ``(n, C)`` probabilities, the input of ``StackingEnsemble.fit``.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    y_arr = np.asarray(y)
    out: np.ndarray | None = None
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y_arr)), y_arr):
        member = fit_member([texts[i] for i in tr], y_arr[tr].tolist())
        p = member.predict_proba([texts[i] for i in te])
        if out is None:
            out = np.zeros((len(texts), p.shape[1]))
        out[te] = p
    assert out is not None
    return out


def ensemble_runs(run_dirs: Sequence[Path], out_dir: Path, method: str = "stacking") -> dict[str, Any]:
    """Fuse trained classifier runs; weights/meta-model fit on their shared validation split.

    The members were trained on the train split only, so their validation predictions are
    held-out predictions (the out-of-fold condition for stacking holds).

    Args:
        run_dirs: classifier runs trained on the same data config.
        out_dir: where ``metrics.json`` (and ``ensemble.json``) go.
        method: ``"mean"``, ``"weighted"`` or ``"stacking"``.

    Returns:
        Test metrics of every method plus of each member.
    """
    from models.classify import classification_metrics, load_classifier
    from models.config import load_config
    from models.data import run_splits

    if method not in ("mean", "weighted", "stacking"):
        raise ConfigurationError(f"method: expected mean, weighted or stacking, got {method!r}")
    members = [load_classifier(Path(r)) for r in run_dirs]
    labels = _check(members)
    _, val, test = run_splits(load_config(Path(run_dirs[0]) / "config.yaml"))
    lab = {x: i for i, x in enumerate(labels)}
    yv, yt = [lab[x] for x in val.labels], [lab[x] for x in test.labels]
    pv = [m.predict_proba(val.texts) for m in members]
    pt = [m.predict_proba(test.texts) for m in members]
    mean = MeanEnsemble(members)
    weighted = WeightedEnsemble(members).fit(pv, yv)
    stack = StackingEnsemble(members).fit(pv, yv)
    results = {
        "mean": classification_metrics(yt, mean.combine(pt)),
        "weighted": classification_metrics(yt, weighted.combine(pt)),
        "stacking": classification_metrics(yt, stack.combine(pt)),
    }
    metrics = {
        "method": f"ensemble-{method}",
        "members": [str(r) for r in run_dirs],
        "weights": weighted.weights,
        "test": results[method],
        "all_methods": results,
        "member_test": [classification_metrics(yt, p) for p in pt],
    }
    atomic_write_json(Path(out_dir) / "metrics.json", metrics)
    atomic_write_json(Path(out_dir) / "ensemble.json", {"members": metrics["members"], "method": method})
    return metrics

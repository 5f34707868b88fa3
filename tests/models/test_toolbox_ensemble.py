"""Ensembles: identical members equal a member; stacking beats a weak member; batch prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABELS = ["a", "b", "c"]


class Fixed:
    """A classifier that returns precomputed probabilities for texts "0", "1", ... (their row index)."""

    def __init__(self, proba: np.ndarray) -> None:
        self.proba = proba
        self.labels = LABELS

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.proba[[int(t) for t in texts]]


def _rand_proba(n: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.normal(size=(n, 3))
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_ensemble_of_identical_members_equals_a_member() -> None:
    from models.classify import Classifier
    from models.ensemble import MeanEnsemble, WeightedEnsemble

    rng = np.random.default_rng(0)
    member = Fixed(_rand_proba(20, rng))
    texts = [str(i) for i in range(20)]
    y = rng.integers(0, 3, 20)
    for ens in (MeanEnsemble([member] * 3), WeightedEnsemble([member] * 3).fit([member.proba] * 3, y)):
        assert isinstance(ens, Classifier)
        np.testing.assert_allclose(ens.predict_proba(texts), member.predict_proba(texts), atol=1e-9)


def test_stacking_beats_a_weak_member_on_a_constructed_case() -> None:
    from models.classify import classification_metrics
    from models.ensemble import MeanEnsemble, StackingEnsemble

    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 3, n)
    # member A is right only about class "a"; member B systematically swaps "b" and "c".
    a = _rand_proba(n, rng) * 0.2
    a[np.arange(n), 0] += np.where(y == 0, 1.0, 0.0)
    b_true = np.where(y == 1, 2, np.where(y == 2, 1, y))
    b = 0.1 * _rand_proba(n, rng)
    b[np.arange(n), b_true] += 1.0
    a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    train, test = np.arange(400), np.arange(400, n)
    stack = StackingEnsemble([Fixed(a), Fixed(b)]).fit([a[train], b[train]], y[train])
    texts = [str(i) for i in test]
    acc_stack = classification_metrics(y[test], stack.predict_proba(texts))["accuracy"]
    acc_a = classification_metrics(y[test], a[test])["accuracy"]
    acc_b = classification_metrics(y[test], b[test])["accuracy"]
    acc_mean = classification_metrics(y[test], MeanEnsemble([Fixed(a), Fixed(b)]).predict_proba(texts))["accuracy"]
    assert acc_stack > 0.95 > max(acc_a, acc_b, acc_mean), (acc_stack, acc_a, acc_b, acc_mean)


def test_out_of_fold_predictions_come_from_members_that_never_saw_the_row() -> None:
    from models.ensemble import out_of_fold_proba

    texts = [str(i) for i in range(30)]
    y = [i % 3 for i in range(30)]
    seen: list[set[str]] = []

    def fit(tr_texts: list[str], tr_y: list[int]) -> Fixed:
        seen.append(set(tr_texts))
        out = np.full((30, 3), 1 / 3)
        out[[int(t) for t in tr_texts]] = 0.0  # would leak as zeros if a row were scored by its own member
        return Fixed(out)

    p = out_of_fold_proba(fit, texts, y, k=3)
    assert len(seen) == 3 and np.allclose(p, 1 / 3)

"""Topic tagging learned from hand-labelled texts: the sentiment encoder's own sentence vector, the
text's words and keyword hits, so a text's topics cost no second encoder pass.

One logistic regression per topic over ``[sentence vector, TF-IDF of the words, keyword hit of every
topic]``, fitted on the labelled texts' ``train``/``tune`` parts (never ``test``); the regularisation
and the single probability threshold are chosen by 5-fold cross-validation on those texts
(micro-F1). The word features (unigrams seen in at least two labelled texts) lift that
cross-validated micro-F1 from 0.738 to 0.774 on the 1,705 fit texts (``benchmarks/topics.py --ablate``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kgnlp.errors import ConfigurationError

__all__ = [
    "DEFAULT_LABELS", "FIT_SPLITS", "KeywordMatcher", "LabelledText", "TopicHead", "WordFeatures", "load_labelled",
    "micro_f1",
]  # fmt: skip

DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "data" / "finance" / "topics_labelled.jsonl"
FIT_SPLITS = ("train", "tune")  # what a head may be fitted and chosen on; ``test`` is for scoring only
C_GRID = (1.0, 3.0, 10.0, 30.0)
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.2, 0.91, 0.05))


@dataclass(frozen=True)
class LabelledText:
    text: str
    topics: tuple[str, ...]
    split: str


def load_labelled(path: Path, names: Sequence[str]) -> list[LabelledText]:
    """Read a ``topics_labelled.jsonl`` file (``text``, ``topics``, ``split`` per line).

    Raises:
        ConfigurationError: unreadable, or a label that is not one of ``names``.
    """
    known = set(names)
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigurationError(f"cannot read topic labels {path}: {e}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            row = LabelledText(str(r["text"]), tuple(r["topics"]), str(r["split"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(f"{path}:{n}: not a {{text, topics, split}} object: {e}") from e
        if unknown := set(row.topics) - known:
            raise ConfigurationError(f"{path}:{n}: unknown topics {sorted(unknown)} (topics file has {sorted(known)})")
        rows.append(row)
    return rows


def micro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Micro-averaged F1 of two boolean ``(n, topics)`` matrices."""
    tp = float((pred & gold).sum())
    n_pred, n_gold = float(pred.sum()), float(gold.sum())
    return 0.0 if tp == 0 else 2 * tp / (n_pred + n_gold)


class KeywordMatcher:
    """One case-insensitive regular expression per topic (from ``topics.yaml``'s ``keywords``).

    The patterns are plain alternations (no nested quantifiers), so a search is linear in the text,
    but a long alternation still costs ~2 ms per 5,000 characters and topic: only the first
    ``MAX_CHARS`` are searched (the encoder reads the first 64 tokens, ~300 characters, and the
    labelled texts are all shorter), and identical texts are searched once. Measured: 64 copies of
    a 5,000-character cashtag flood took 1.16 s here, most of a 2.3 s request.
    """

    MAX_CHARS = 1000

    def __init__(self, keywords: Sequence[Sequence[str]]) -> None:
        # a pattern with no capital letter (escapes included) is searched case-sensitively in the
        # lower-cased text: the same hits as IGNORECASE, 0.52 s -> 0.31 s on 2,048 tweets (a development
        # measurement, not a committed command)
        self.patterns: list[tuple[re.Pattern[str], bool] | None] = []
        for ks in keywords:
            source = "|".join(f"(?:{_literal_first(k)})" for k in ks)
            lower = source == source.lower()
            self.patterns.append((re.compile(source, 0 if lower else re.IGNORECASE), lower) if ks else None)

    def hits(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, topics)`` 0/1 matrix: does the topic's pattern occur in the text."""
        distinct = list(dict.fromkeys(texts))
        heads = [t[: self.MAX_CHARS] for t in distinct]
        lowered = [t.lower() for t in heads]
        found = np.zeros((len(distinct), len(self.patterns)), dtype=np.float32)
        for j, entry in enumerate(self.patterns):
            if entry is not None:
                pattern, lower = entry
                for i, t in enumerate(lowered if lower else heads):
                    if pattern.search(t):
                        found[i, j] = 1.0
        row = {t: i for i, t in enumerate(distinct)}
        return found[[row[t] for t in texts]]


_LEADING_BOUNDARY = re.compile(r"\\b([A-Za-z0-9])(?![?*+{])")  # a quantified literal stays as written


def _literal_first(keyword: str) -> str:
    r"""``\bsees`` as ``s(?<!\w.)ees``: the same matches, but the alternation now starts with a literal.

    Python's ``re`` scans for a pattern's possible first characters before trying it at a position
    only when every alternative starts with a literal; one leading ``\b`` made it try all of a
    topic's alternatives at every character. The lookbehind checks what ``\b`` did (the character
    before the literal is not a word character, or there is none). The shipped keywords: 3.5x faster
    (~115 -> ~33 µs a tweet; a development measurement), the same hits (tested).
    """
    m = _LEADING_BOUNDARY.match(keyword)
    return f"{m.group(1)}(?<!\\w.){keyword[m.end() :]}" if m else keyword


class WordFeatures:
    """TF-IDF of a text's words over a fixed vocabulary (sublinear counts, L2-normalised rows).

    Args:
        terms: the vocabulary, in feature order; idf: its inverse document frequencies.
    """

    def __init__(self, terms: Sequence[str], idf: np.ndarray) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.terms = list(terms)
        self.idf = np.asarray(idf, dtype=np.float64)
        self._vectorizer: Any = None
        if self.terms:  # no terms: no word features (sklearn refuses an empty vocabulary)
            self._vectorizer = TfidfVectorizer(vocabulary=self.terms, sublinear_tf=True, dtype=np.float32)
            self._vectorizer.idf_ = self.idf

    @classmethod
    def fit(cls, texts: Sequence[str], min_df: int | None = 2) -> WordFeatures:
        """The vocabulary of ``texts``: words in at least ``min_df`` of them (None: no words)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        if min_df is None:
            return cls([], np.zeros(0))

        v = TfidfVectorizer(min_df=min_df, sublinear_tf=True, dtype=np.float32).fit(list(texts))
        return cls(v.get_feature_names_out().tolist(), v.idf_)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, terms)`` dense features of the first ``KeywordMatcher.MAX_CHARS`` of each text."""
        if self._vectorizer is None:
            return np.zeros((len(texts), 0), dtype=np.float32)
        return np.asarray(self.sparse(texts).toarray(), dtype=np.float32)

    def sparse(self, texts: Sequence[str]) -> Any:
        """The same features as a SciPy CSR matrix (a text has a handful of the ~2,000 terms)."""
        clipped = [t[: KeywordMatcher.MAX_CHARS] for t in texts]
        return self._vectorizer.transform(clipped)


class TopicHead:
    """Multi-label topics from sentence vectors, words and keyword hits (see the module docstring).

    Args:
        names: topic names, in the order of the weight rows.
        matcher: the topics' keyword patterns.
        words: the word features the head was fitted with.
        coef: ``(topics, dim + terms + topics)`` weights; intercept: ``(topics,)``.
        threshold: minimum probability for a topic.
        max_topics: cap on topics per text (most probable first).
        report: how the head was fitted (rows, chosen C and threshold, cross-validated micro-F1).
    """

    needs_vectors = True  # tag() reads the sentiment classifier's sentence vectors

    def __init__(
        self,
        names: Sequence[str],
        matcher: KeywordMatcher,
        words: WordFeatures,
        coef: np.ndarray,
        intercept: np.ndarray,
        threshold: float,
        max_topics: int = 3,
        report: dict[str, object] | None = None,
    ) -> None:
        self.names = list(names)
        self.matcher = matcher
        self.words = words
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.threshold = threshold
        self.max_topics = max_topics
        self.report = dict(report or {})

    @staticmethod
    def _design(vectors: np.ndarray, words: WordFeatures, matcher: KeywordMatcher, texts: Sequence[str]) -> np.ndarray:
        return np.hstack([np.asarray(vectors, dtype=np.float32), words.transform(texts), matcher.hits(texts)])

    @classmethod
    def fit(
        cls,
        names: Sequence[str],
        matcher: KeywordMatcher,
        texts: Sequence[str],
        vectors: np.ndarray,
        gold: Sequence[Sequence[str]],
        max_topics: int = 3,
        seed: int = 0,
        word_min_df: int | None = 2,
    ) -> TopicHead:
        """Fit on labelled texts; C and the threshold are chosen by 5-fold cross-validation.

        ``word_min_df``: words in at least this many texts become features (None: no word features;
        ``benchmarks/topics.py --ablate`` measures what they bring)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import KFold

        if len(texts) < 10:
            raise ConfigurationError(f"a topic head needs labelled texts: got {len(texts)}")
        words = WordFeatures.fit(texts, word_min_df)
        x = cls._design(vectors, words, matcher, texts)
        y = np.array([[n in g for n in names] for g in gold], dtype=bool)

        # liblinear: measured 0.8 s for 18 fits on 910 labelled texts where lbfgs took 8.9 s (same CV micro-F1)
        def fit_one(xs: np.ndarray, ys: np.ndarray, c: float) -> tuple[np.ndarray, float]:
            if ys.all() or not ys.any():  # one class only: a constant
                return np.zeros(xs.shape[1], dtype=np.float32), 8.0 if ys.all() else -8.0
            m = LogisticRegression(C=c, class_weight="balanced", solver="liblinear").fit(xs, ys)
            return m.coef_[0], float(m.intercept_[0])

        best: tuple[float, float, float] = (-1.0, C_GRID[0], 0.5)
        folds = list(KFold(5, shuffle=True, random_state=seed).split(x))
        for c in C_GRID:
            proba = np.zeros(y.shape, dtype=np.float32)
            for tr, te in folds:
                for j in range(len(names)):
                    w, b = fit_one(x[tr], y[tr, j], c)
                    proba[te, j] = 1 / (1 + np.exp(-(x[te] @ w + b)))
            for t in THRESHOLDS:
                f1 = micro_f1(_top(proba, t, max_topics), y)
                if f1 > best[0] + 1e-9:
                    best = (f1, c, t)
        f1, c, t = best
        fitted = [fit_one(x, y[:, j], c) for j in range(len(names))]
        coef = np.stack([w for w, _ in fitted])
        intercept = np.array([b for _, b in fitted])
        report: dict[str, object] = {
            "fitted_on": len(texts),
            "C": float(c),
            "threshold": float(t),
            "cv_micro_f1": round(f1, 4),
            "terms": len(words.terms),
        }
        return cls(names, matcher, words, coef, intercept, float(t), max_topics, report)

    def save(self, path: Path) -> None:
        """Write the fitted weights (``.npz``, no pickle) atomically."""
        import io

        from kgnlp.files import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(
            buf, coef=self.coef, intercept=self.intercept, threshold=np.float64(self.threshold),
            names=np.array(self.names), report=np.array(json.dumps(self.report)),
            terms=np.array(self.words.terms), idf=self.words.idf,
        )  # fmt: skip
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path, matcher: KeywordMatcher, max_topics: int = 3) -> TopicHead:
        """Read weights written by :meth:`save` (raises ``OSError``/``ValueError`` on a bad file)."""
        with np.load(Path(path), allow_pickle=False) as z:
            report = json.loads(str(z["report"]))
            words = WordFeatures([str(t) for t in z["terms"]], z["idf"])
            head = cls(
                [str(n) for n in z["names"]], matcher, words, z["coef"], z["intercept"], float(z["threshold"]),
                max_topics, report,
            )  # fmt: skip
        if head.coef.shape[0] != len(matcher.patterns):
            raise ValueError(f"{path}: {head.coef.shape[0]} topics, the topics file has {len(matcher.patterns)}")
        return head

    def proba(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """``(n, topics)`` probabilities."""
        if not len(texts):
            return np.zeros((0, len(self.names)), dtype=np.float32)
        # the design matrix's three blocks, multiplied apart: the word block stays sparse
        dim, terms = np.asarray(vectors).shape[1], len(self.words.terms)
        z = np.asarray(vectors, dtype=np.float32) @ self.coef[:, :dim].T + self.intercept
        z += self.matcher.hits(texts) @ self.coef[:, dim + terms :].T
        if terms:
            z += np.asarray(self.words.sparse(texts) @ self.coef[:, dim : dim + terms].T, dtype=np.float32)
        return 1 / (1 + np.exp(-z))

    def tag(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> list[list[str]]:
        """Topics of each text, most probable first."""
        if vectors is None:
            raise ValueError("TopicHead.tag needs the sentence vectors of the encoder it was fitted on")
        p = self.proba(texts, vectors)
        out = []
        for i, row in enumerate(_top(p, self.threshold, self.max_topics)):
            idx = np.flatnonzero(row)
            idx = idx[np.argsort(-p[i, idx])]
            out.append([self.names[j] for j in idx])
        return out


def _top(proba: np.ndarray, threshold: float, k: int) -> np.ndarray:
    """Boolean mask: probability ≥ threshold and among the row's ``k`` most probable."""
    keep = proba >= threshold
    if proba.shape[1] > k:
        kth = -np.sort(-proba, axis=1)[:, k - 1 : k]
        keep &= proba >= kth
    return keep

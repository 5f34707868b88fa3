"""The learned topic head: keyword patterns, fitting with cross-validated choices, the shipped labels."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from apps.sentiment.topic_head import (
    C_GRID,
    DEFAULT_LABELS,
    FIT_SPLITS,
    KeywordMatcher,
    TopicHead,
    WordFeatures,
    _literal_first,
    _top,
    load_labelled,
    micro_f1,
)
from apps.sentiment.topics import load_topics
from kgnlp.errors import ConfigurationError

NAMES = ["earnings", "dividends_buybacks", "macro"]


def _synthetic(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Texts whose topic shows in a vector direction (earnings, macro) or only in a keyword (dividends)."""
    rng = np.random.default_rng(seed)
    texts, vecs, gold = [], [], []
    for i in range(n):
        topics = [t for t, on in zip(NAMES, rng.random(3) < 0.35, strict=True) if on]
        v = rng.normal(0, 0.3, 8)
        v[0] += 2.0 if "earnings" in topics else 0.0
        v[1] += 2.0 if "macro" in topics else 0.0
        texts.append(f"text {i}" + (" declares a dividend" if "dividends_buybacks" in topics else ""))
        vecs.append(v / np.linalg.norm(v))
        gold.append(topics)
    return texts, np.asarray(vecs, dtype=np.float32), gold


def test_keywords_match_case_insensitively_per_topic() -> None:
    m = KeywordMatcher([[r"\beps\b", "earnings"], [r"dividend", r"buy[- ]?backs?"], []])
    hits = m.hits(["Q3 EPS beats", "Board approves BUYBACK", "nothing here", "Earnings and a dividend"])
    assert hits.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]]
    # a pattern with capitals (a user's, or an escape such as \S) keeps IGNORECASE on the original text
    caps = KeywordMatcher([["CEO"], [r"\bq\S"], [r"\bQ[1-4]\b"]])
    assert caps.hits(["new ceo named", "Q3 up", "q4"]).tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]


def test_a_leading_word_boundary_rewritten_as_a_lookbehind_keeps_every_hit() -> None:
    import re

    keywords = [r"\bsees\b", r"\bq[1-4]\b", r"\bs?ales", r"\b5g\b", r"\bsu(?:es?|ed)\b", r"\bQ[1-4]", r"\bx|yz"]
    texts = ["sees", "oversees", "_sees", "-sees", "é sees", "ésees", "\nsees", "9sees", "q3", "hq3", "(q4)",
             "sales", "ales", "wales", "5g", "x5g", "su", "sues", "pursued", "Q2", "xq2", "x", "ax", "yz", "ayz", "",
             "s"]  # fmt: skip
    assert _literal_first(r"\bsees\b") == r"s(?<!\w.)ees\b"
    assert _literal_first(r"\bs?ales") == r"\bs?ales"  # a quantified first literal is left as written
    for k in keywords:
        got = KeywordMatcher([[k]]).hits(texts)[:, 0].astype(bool).tolist()
        assert got == [bool(re.search(k, t, re.IGNORECASE)) for t in texts], k


def test_lower_cased_search_gives_the_hits_of_ignorecase_on_real_tweets() -> None:
    import csv
    import re

    from apps.sentiment.classifier_data import shipped_twitter_csv

    with open(shipped_twitter_csv(), newline="", encoding="utf-8") as f:
        texts = [*[r["text"] for r in csv.DictReader(f)][:3000], "İSTANBUL EARNINGS", "ſtock BUYBACK", "É" * 2000]
    keywords = [t.keywords for t in load_topics()]
    want = np.array(
        [
            [bool(re.search("|".join(ks), t[: KeywordMatcher.MAX_CHARS], re.IGNORECASE)) for ks in keywords]
            for t in texts
        ]
    )
    got = KeywordMatcher(keywords).hits(texts).astype(bool)
    assert got.sum() > 1000 and (got == want).all(), np.argwhere(got != want)[:5]


def test_shipped_keywords_stay_linear_on_cap_sized_hostile_text() -> None:
    topics = load_topics()
    m = KeywordMatcher([t.keywords for t in topics])
    hostile = ["a." * 2500, " " * 5000, "{{" * 2500, "ceo " * 1250, "$1," * 1666, "names " * 833]
    t0 = time.perf_counter()
    m.hits(hostile)
    assert time.perf_counter() - t0 < 0.5


def test_fit_learns_vector_and_keyword_topics_and_generalises() -> None:
    texts, vecs, gold = _synthetic(240)
    m = KeywordMatcher([[], ["dividend"], []])
    head = TopicHead.fit(NAMES, m, texts[:160], vecs[:160], gold[:160], max_topics=3)
    pred = head.tag(texts[160:], vecs[160:])
    y = np.array([[n in g for n in NAMES] for g in gold[160:]])
    p = np.array([[n in g for n in NAMES] for g in pred])
    assert micro_f1(p, y) > 0.9
    assert head.report["fitted_on"] == 160 and head.report["C"] in C_GRID
    assert 0.2 <= head.threshold <= 0.9 and head.report["cv_micro_f1"] > 0.9


def test_a_topic_told_only_by_its_words_is_learned() -> None:
    """No keyword pattern and noise vectors: "macro" shows only in words, so the head must read them."""
    rng = np.random.default_rng(3)
    words = ["inflation", "rates", "yields", "recession"]
    texts, gold = [], []
    for i in range(200):
        on = rng.random() < 0.4
        filler = " ".join(rng.choice(["shares", "company", "today", "update", "report"], 3))
        texts.append(f"{filler} {rng.choice(words)} {i}" if on else f"{filler} {i}")
        gold.append(["macro"] if on else [])
    vecs = rng.normal(size=(200, 8)).astype(np.float32)
    head = TopicHead.fit(NAMES, KeywordMatcher([[], [], []]), texts[:140], vecs[:140], gold[:140])
    pred = np.array([["macro" in t for t in head.tag(texts[140:], vecs[140:])]]).T
    y = np.array([["macro" in g for g in gold[140:]]]).T
    assert micro_f1(pred, y) > 0.9
    assert set(words) <= set(head.words.terms) and head.report["terms"] == len(head.words.terms)
    dense = TopicHead._design(vecs, head.words, head.matcher, texts) @ head.coef.T + head.intercept
    assert np.allclose(head.proba(texts, vecs), 1 / (1 + np.exp(-dense)), atol=1e-5)  # blocks multiplied apart


def test_word_features_read_a_fixed_vocabulary_and_the_head_of_long_texts() -> None:
    w = WordFeatures.fit(["Fed raises rates", "rates and yields rise", "Fed holds", "yields fall"])
    assert w.terms == ["fed", "rates", "yields"]  # words in at least two texts
    x = w.transform(["RATES rates Fed", "nothing known", "x " * KeywordMatcher.MAX_CHARS + "rates"])
    assert x.shape == (3, 3) and np.allclose(np.linalg.norm(x[0]), 1.0)
    assert x[0, 1] > x[0, 0] > 0 and not x[1].any() and not x[2].any()
    again = WordFeatures(w.terms, w.idf)  # what TopicHead.load rebuilds from the saved arrays
    assert np.allclose(again.transform(["Fed rates"]), w.transform(["Fed rates"]))


def test_a_head_without_word_features_fits_saves_and_loads(tmp_path: Path) -> None:
    """``word_min_df=None`` (what the benchmark's ablation compares against): no word columns at all."""
    texts, vecs, gold = _synthetic(120)
    m = KeywordMatcher([[], ["dividend"], []])
    head = TopicHead.fit(NAMES, m, texts, vecs, gold, word_min_df=None)
    assert head.words.terms == [] and head.coef.shape == (3, 8 + 3) and head.report["terms"] == 0
    head.save(tmp_path / "head.npz")
    again = TopicHead.load(tmp_path / "head.npz", m)
    assert again.tag(texts, vecs) == head.tag(texts, vecs)


def test_tag_orders_by_probability_and_caps_topics() -> None:
    texts, vecs, gold = _synthetic(120)
    head = TopicHead.fit(NAMES, KeywordMatcher([[], ["dividend"], []]), texts, vecs, gold, max_topics=1)
    assert all(len(t) <= 1 for t in head.tag(texts, vecs))
    proba = np.array([[0.9, 0.8, 0.1], [0.3, 0.95, 0.96]])
    assert _top(proba, 0.5, 1).tolist() == [[True, False, False], [False, False, True]]
    assert _top(proba, 0.5, 3).tolist() == [[True, True, False], [False, True, True]]


def test_tag_without_vectors_is_refused() -> None:
    texts, vecs, gold = _synthetic(40)
    head = TopicHead.fit(NAMES, KeywordMatcher([[], [], []]), texts, vecs, gold)
    with pytest.raises(ValueError, match="sentence vectors"):
        head.tag(texts)


def test_a_topic_absent_from_the_labels_is_never_tagged() -> None:
    texts, vecs, gold = _synthetic(60)
    gold = [[t for t in g if t != "macro"] for g in gold]
    head = TopicHead.fit(NAMES, KeywordMatcher([[], [], []]), texts, vecs, gold)
    assert not any("macro" in t for t in head.tag(texts, vecs))


def test_labels_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps({"text": "x", "topics": ["weather"], "split": "tune"}) + "\n")
    with pytest.raises(ConfigurationError, match=r"labels.jsonl:1: unknown topics \['weather'\]"):
        load_labelled(bad, NAMES)
    bad.write_text("{not json\n")
    with pytest.raises(ConfigurationError, match=r"labels\.jsonl:1"):
        load_labelled(bad, NAMES)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_labelled(tmp_path / "missing.jsonl", NAMES)


def test_a_bad_keyword_pattern_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("earnings:\n  description: results\n  keywords: ['(unclosed']\n")
    with pytest.raises(ConfigurationError, match=r"'earnings'.*not a regular expression"):
        load_topics(path)


def test_shipped_labels_load_with_fit_and_test_parts_apart() -> None:
    names = [t.name for t in load_topics()]
    rows = load_labelled(DEFAULT_LABELS, names)
    fit = [r for r in rows if r.split in FIT_SPLITS]
    test = [r for r in rows if r.split == "test"]
    assert len(fit) >= 210 and len(test) == 210
    assert not {r.text for r in fit} & {r.text for r in test}
    assert {r.split for r in rows} <= {*FIT_SPLITS, "test"}


class _VectorClassifier:
    """Stands in for the registered classifier: deterministic vectors from the text's hash."""

    name = "fake-v1"

    def __init__(self) -> None:
        self.calls = 0

    def predict_with_vectors(self, texts: list[str]) -> tuple[list[object], np.ndarray]:
        self.calls += 1
        rng = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts]
        return [None] * len(texts), np.asarray(rng, dtype=np.float32)


def test_service_fits_the_head_once_and_reloads_it(tmp_path: Path) -> None:
    from apps.core.settings import SentimentSettings
    from apps.sentiment.service import fit_topic_head

    topics = load_topics()
    clf = _VectorClassifier()
    first = fit_topic_head(topics, clf, SentimentSettings(), tmp_path)
    assert clf.calls == 1 and first.report["fitted_on"] >= 210
    again = fit_topic_head(topics, clf, SentimentSettings(), tmp_path)
    assert clf.calls == 1  # loaded from KGNLP_HOME/sentiment/topic_heads, not refitted
    assert np.allclose(again.coef, first.coef) and again.threshold == first.threshold
    assert again.report == first.report
    texts = ["Apple declares a quarterly dividend", "Fed raises rates"]
    _, vecs = clf.predict_with_vectors(texts)
    assert again.tag(texts, vecs) == first.tag(texts, vecs)
    (cached,) = (tmp_path / "sentiment" / "topic_heads").glob("*.npz")
    cached.write_bytes(b"not an npz")
    fit_topic_head(topics, clf, SentimentSettings(), tmp_path)  # a damaged file is refitted, not fatal
    assert clf.calls == 3


def test_service_without_labels_falls_back_to_similarity(tmp_path: Path) -> None:
    from apps.core.settings import SentimentSettings
    from apps.sentiment.service import fit_topic_head

    cfg = SentimentSettings(topic_labels=tmp_path / "absent.jsonl")
    assert fit_topic_head(load_topics(), _VectorClassifier(), cfg, tmp_path) is None


def test_keyword_hits_read_the_head_of_each_text_once() -> None:
    from apps.sentiment.topic_head import KeywordMatcher

    m = KeywordMatcher([["earnings"], ["dividend"], []])
    far = "x" * KeywordMatcher.MAX_CHARS + " dividend"  # beyond what is searched
    hits = m.hits(["Q3 earnings beat", far, "Q3 earnings beat", "special dividend declared"])
    assert hits.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert m.hits([]).shape == (0, 3)

"""Sentiment classifier: data splits, calibration, registration, loading and prediction."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.sentiment.classifier import LABELS, RegisteredClassifier, load_latest, models_dir, registered_models
from apps.sentiment.classifier_data import (
    load_labelled_jsonl,
    load_phrasebank,
    load_twitter,
    mix_in_sentences,
    prepare_splits,
    prepare_twitter_three_way_splits,
    shipped_synthetic_jsonl,
    shipped_twitter_csv,
)
from apps.sentiment.training import (
    ensure_default_model,
    evaluate_proba,
    expected_calibration_error,
    fit_temperature,
    read_split,
    train_default,
)
from kgnlp.errors import ConfigurationError, NotFoundError, ValidationError


def _phrasebank(folder: Path, n_per_class: int = 20) -> Path:
    """A tiny PhraseBank-format folder (latin-1, ``sentence@label``, one duplicate, AllAgree subset)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Company {lab} report number {i} for Sepp\xe4l\xe4 @ 2020 .@{lab}"
        for lab in LABELS
        for i in range(n_per_class)
    ]
    lines.append(lines[0])  # a duplicate text must not end up in two splits
    (folder / "Sentences_50Agree.txt").write_bytes("\n".join(lines).encode("latin-1"))
    (folder / "Sentences_AllAgree.txt").write_bytes("\n".join(lines[::3]).encode("latin-1"))
    return folder


def _twitter(path: Path, n_per_class: int = 10) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for code, word in (("0", "slumps"), ("1", "soars"), ("2", "holds meeting")):
            for i in range(n_per_class):
                w.writerow([f"$TCK{i} {word} after results https://t.co/x{i}", code])
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_phrasebank_parsing_splits_on_last_at_and_deduplicates(tmp_path: Path) -> None:
    rows = load_phrasebank(_phrasebank(tmp_path / "pb"))
    assert len(rows) == 60  # 61 lines, one duplicate
    assert rows[0][0].endswith("@ 2020 .") and rows[0][1] == "negative"
    assert "Sepp\xe4l\xe4" in rows[0][0]  # latin-1 decoded
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Sentences_50Agree.txt").write_text("no label here\n")
    with pytest.raises(ValidationError, match="sentence@label"):
        load_phrasebank(tmp_path / "bad")


def test_twitter_labels_are_mapped(tmp_path: Path) -> None:
    rows = load_twitter(_twitter(tmp_path / "tw.csv"))
    mapping = {t.split()[1]: y for t, y in rows}
    assert mapping == {"slumps": "negative", "soars": "positive", "holds": "neutral"}


def test_splits_are_stratified_disjoint_and_twitter_only_trains(tmp_path: Path) -> None:
    info = prepare_splits(tmp_path / "s", _phrasebank(tmp_path / "pb"), _twitter(tmp_path / "tw.csv"), 0.2, 0.2)
    parts = {k: _rows(p) for k, p in (("train", info.train), ("val", info.validation), ("test", info.test))}
    texts = {k: {r["text"] for r in v} for k, v in parts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["val"] and not texts["val"] & texts["test"]
    assert {r["source"] for r in parts["val"] + parts["test"]} == {"phrasebank"}
    assert sum(r["source"] == "twitter" for r in parts["train"]) == 30
    for k in ("val", "test"):  # 20 per class * 0.2 = 4 per class
        assert sorted(r["label"] for r in parts[k]) == sorted(list(LABELS) * 4)
    allagree = {t for t, _ in load_phrasebank(tmp_path / "pb", "AllAgree")}
    assert all((r["text"] in allagree) == (r["allagree"] == "1") for r in parts["test"])
    assert info.counts["test_allagree"] == sum(r["allagree"] == "1" for r in parts["test"])
    again = prepare_splits(tmp_path / "s2", tmp_path / "pb", tmp_path / "tw.csv", 0.2, 0.2)
    assert again.fingerprint == info.fingerprint  # deterministic


def test_synthetic_sentences_join_the_training_part_only(tmp_path: Path) -> None:
    from apps.sentiment.training import candidate_splits

    pb, tw = _phrasebank(tmp_path / "pb"), _twitter(tmp_path / "tw.csv")
    plain = candidate_splits("pb", tmp_path / "pb-splits", pb, tw)
    syn = candidate_splits("pbsyn", tmp_path / "syn-splits", pb, tw)
    shipped = [
        r for part in ("split", "more") for r in load_labelled_jsonl(shipped_synthetic_jsonl(part))
    ]  # both MIT batches
    train = _rows(syn.train)
    assert [(r["text"], r["label"]) for r in train if r["source"] == "synthetic"] == shipped
    assert [r for r in train if r["source"] != "synthetic"] == _rows(plain.train)
    assert syn.validation.read_bytes() == plain.validation.read_bytes()  # choices and scores stay PhraseBank's
    assert syn.test.read_bytes() == plain.test.read_bytes()
    assert syn.counts["train_synthetic"] == len(shipped) and "train_synthetic" not in plain.counts
    with pytest.raises(ConfigurationError, match="splits kind"):
        candidate_splits("tweets", tmp_path / "x", pb, tw)


def test_labelled_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "ok.jsonl"
    good.write_text(
        '{"text": " Sales rose . ", "label": "positive"}\n\n{"text": "It is based in Oslo.", "label": "neutral"}\n'
    )
    assert load_labelled_jsonl(good) == [("Sales rose .", "positive"), ("It is based in Oslo.", "neutral")]
    for i, line in enumerate(('{"text": "x", "label": "bullish"}', '{"text": "  ", "label": "neutral"}', "{not json")):
        bad = tmp_path / f"bad{i}.jsonl"
        bad.write_text('{"text": "fine", "label": "negative"}\n' + line + "\n")
        with pytest.raises(ValidationError, match=f"bad{i}.jsonl:2"):
            load_labelled_jsonl(bad)


def test_mixed_in_sentences_train_and_validate_but_never_reach_the_tweet_test(tmp_path: Path) -> None:
    tweets, _ = prepare_twitter_three_way_splits(tmp_path / "tw", _twitter(tmp_path / "tw.csv"), 0.2, 0.2)
    extra = [
        (f"Company {i} {w} .", y)
        for i in range(10)
        for w, y in (("grew", "positive"), ("fell", "negative"), ("met", "neutral"))
    ]
    mixed, extra_test, idx = mix_in_sentences(tmp_path / "mixed", tweets, extra, "news", 0.2, 0.2)
    parts = {k: _rows(p) for k, p in (("train", mixed.train), ("val", mixed.validation), ("test", mixed.test))}
    held = _rows(extra_test)
    assert mixed.test == tweets.test and {r["source"] for r in parts["test"]} == {"twitter"}
    assert sum(r["source"] == "news" for r in parts["train"]) == mixed.counts["news_train"] == 18
    assert sum(r["source"] == "news" for r in parts["val"]) == len(idx["validation"]) == 6
    assert len(held) == len(idx["test"]) == 6 and sorted(r["label"] for r in held) == sorted(list(LABELS) * 2)
    texts = [{r["text"] for r in rows if r["source"] == "news"} for rows in (parts["train"], parts["val"], held)]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    assert len(parts["train"]) == tweets.counts["train"] + 18 and mixed.fingerprint != tweets.fingerprint
    again, _, _ = mix_in_sentences(tmp_path / "again", tweets, extra, "news", 0.2, 0.2)
    assert again.fingerprint == mixed.fingerprint
    # training-only rows change the training file alone: one validation set for runs with and without them
    more, more_test, _ = mix_in_sentences(
        tmp_path / "more", tweets, extra, "news", 0.2, 0.2, train_only=[("Plant opened .", "neutral")]
    )
    assert (
        more.validation.read_bytes() == mixed.validation.read_bytes()
        and more_test.read_bytes() == extra_test.read_bytes()
    )
    assert _rows(more.train)[-1] == {
        "text": "Plant opened .",
        "label": "neutral",
        "source": "news_more",
        "allagree": "0",
    }
    assert more.counts["news_more_train"] == 1 and more.fingerprint != mixed.fingerprint


def test_temperature_scaling_recovers_the_temperature_and_lowers_ece() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 3))
    true_t = 2.5
    p = np.exp(logits / true_t)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    t = fit_temperature(logits, y)
    assert abs(t - true_t) < 0.25
    raw = np.exp(logits - logits.max(1, keepdims=True))
    raw /= raw.sum(1, keepdims=True)
    cal = np.exp(logits / t - (logits / t).max(1, keepdims=True))
    cal /= cal.sum(1, keepdims=True)
    assert expected_calibration_error(cal, y) < expected_calibration_error(raw, y) / 2
    m = evaluate_proba(cal, y.tolist(), [1, 0] * 2000)
    assert m["allagree_n"] == 2000 and 0 <= m["allagree_accuracy"] <= 1


def test_load_latest_without_a_model_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="kgnlp sentiment setup"):
        load_latest(tmp_path)
    (models_dir(tmp_path) / ".half-written.tmp").mkdir(parents=True)
    (models_dir(tmp_path) / "no-manifest").mkdir()
    assert registered_models(tmp_path) == []


def test_shipped_synthetic_sentences_are_labelled_unique_and_licensed() -> None:
    first, more = load_labelled_jsonl(shipped_synthetic_jsonl()), load_labelled_jsonl(shipped_synthetic_jsonl("more"))
    for rows in (first, more):
        assert len(rows) >= 1500 and len({t for t, _ in rows}) == len(rows)
        counts = {lab: sum(y == lab for _, y in rows) for lab in LABELS}
        assert min(counts.values()) >= 0.1 * len(rows), counts
    assert not {t for t, _ in first} & {t for t, _ in more}
    source = (shipped_synthetic_jsonl().parent / "SOURCE.md").read_text()
    assert "synthetic_corporate_news.jsonl" in source and "synthetic_corporate_news_more.jsonl" in source
    assert "MIT" in source
    with pytest.raises(ValidationError, match="synthetic part"):
        shipped_synthetic_jsonl("all")


def test_shipped_synthetic_sentences_share_no_text_with_phrasebank(shared_data: Path) -> None:
    """Written without reading PhraseBank, then de-contaminated: no 6-word run of its sentences is in the file."""
    rows = load_labelled_jsonl(shipped_synthetic_jsonl()) + load_labelled_jsonl(shipped_synthetic_jsonl("more"))
    pb = load_phrasebank(shared_data / "financial_phrasebank", "50Agree")

    def grams(text: str) -> set[tuple[str, ...]]:
        words = text.lower().replace(" ,", ",").replace(" .", ".").split()
        return {tuple(words[i : i + 6]) for i in range(len(words) - 5)}

    seen = set().union(*(grams(t) for t, _ in pb))
    shared = [t for t, _ in rows if grams(t) & seen]
    assert not shared, shared[:3]


def test_shipped_twitter_data_is_present_with_its_licence_note() -> None:
    rows = load_twitter(shipped_twitter_csv())
    assert len(rows) > 9000 and {y for _, y in rows} == set(LABELS)
    folder = shipped_twitter_csv().parent
    assert "MIT" in (folder / "SOURCE.md").read_text() and (folder / "LICENSE.md").is_file()


LAYERS = ["enc.layer.0.output.dense", "enc.layer.1.output.dense", "enc.layer.2.output.dense"]


def _choose_served_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: Callable[[bool, set[str]], set[int]]
) -> dict[str, Any]:
    """``training._served_form`` on 30 validation texts with a fake model: ``wrong(quantize, layers kept
    in float)`` says which texts it gets wrong."""
    from apps.sentiment import classifier, training
    from apps.sentiment.classifier import HEAD_LAYERS

    y = [0, 1, 2] * 10

    def log_proba(self: RegisteredClassifier, texts: list[str]) -> np.ndarray:
        bad = wrong(bool(self.quantize), set(self.keep_float) - set(HEAD_LAYERS))
        labels = [(t + 1) % 3 if i in bad else t for i, t in enumerate(y)]
        return np.log(np.eye(3)[labels] * 0.98 + 0.01)

    monkeypatch.setattr(RegisteredClassifier, "load", lambda self: self)
    monkeypatch.setattr(RegisteredClassifier, "log_proba", log_proba)
    monkeypatch.setattr(classifier, "ffn_output_layers", lambda folder: list(LAYERS))
    manifest = {"members": [{"path": "members/0", "weight": 1.0}]}
    return training._served_form(tmp_path, manifest, [str(i) for i in range(30)], y, log=lambda s: None)


@pytest.mark.parametrize(
    ("correct", "want"),
    [
        # int8 as good as fp32: every layer int8 but the head
        (lambda kept: 30, (True, [])),
        # one layer's feed-forward output in float is enough: the most helpful alone
        (lambda kept: 30 if "enc.layer.1.output.dense" in kept else 20, (True, ["enc.layer.1.output.dense"])),
        # two needed: the best alone first (layer 2: 25 of 30), then the next best alone (layer 0: 22)
        (
            lambda kept: {
                frozenset({LAYERS[0]}): 22,
                frozenset({LAYERS[1]}): 21,
                frozenset({LAYERS[2]}): 25,
                frozenset({LAYERS[2], LAYERS[0]}): 30,
                frozenset(LAYERS): 30,
            }.get(frozenset(kept), 20),
            (True, [LAYERS[2], LAYERS[0]]),
        ),
        # nothing within a point of fp32: served in fp32
        (lambda kept: 25, (False, [])),
        # one layer alone would pass, but not all of them in float: fp32 (the search is not entered)
        (lambda kept: 30 if kept == {LAYERS[1]} else 20, (False, [])),
    ],
)
def test_served_form_is_chosen_on_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, correct: Any, want: tuple[bool, list[str]]
) -> None:
    from apps.sentiment.classifier import HEAD_LAYERS

    # the first ``right`` texts are correct; fp32 gets all 30
    got = _choose_served_form(
        tmp_path, monkeypatch, lambda quantize, kept: set(range(correct(kept) if quantize else 30, 30))
    )
    assert (got["quantize"], [k for k in got["keep_float"] if k not in HEAD_LAYERS]) == want
    assert set(HEAD_LAYERS) <= set(got["keep_float"]) and got["quantization"]["val_accuracy_fp32"] == 1.0


def test_served_form_search_stops_when_every_projection_in_float_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = _choose_served_form(tmp_path, monkeypatch, lambda quantize, kept: set(range(25, 30)) if quantize else set())
    tried = [t["keep_float"] for t in got["quantization"]["int8_tried"]]
    assert tried == [[], LAYERS] and not got["quantize"]


def test_served_form_measures_each_form_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = _choose_served_form(
        tmp_path, monkeypatch, lambda quantize, kept: set() if not quantize or kept == set(LAYERS) else {0, 1, 2}
    )
    tried = [frozenset(t["keep_float"]) for t in got["quantization"]["int8_tried"]]
    assert len(tried) == len(set(tried)) and got["quantize"] and set(got["keep_float"]) >= set(LAYERS)


def test_served_form_refuses_int8_whose_loss_is_not_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 and all-int8 are both right on 27 of 30 texts, but not the same 27: six labels changed, so
    the loss's upper bound is far above a point although the accuracies are equal."""
    from apps.sentiment.classifier import HEAD_LAYERS

    got = _choose_served_form(
        tmp_path,
        monkeypatch,
        lambda quantize, kept: {0, 1, 2} if quantize and "enc.layer.2.output.dense" not in kept else {27, 28, 29},
    )
    assert got["quantize"] and [k for k in got["keep_float"] if k not in HEAD_LAYERS] == ["enc.layer.2.output.dense"]
    first = got["quantization"]["int8_tried"][0]
    assert first["val_accuracy"] == 0.9 and first["labels_changed"] == 0.2 and first["loss_bound"] > 0.1  # refused
    assert got["quantization"]["val_accuracy_fp32"] == 0.9


@pytest.mark.parametrize(
    ("b", "c", "n", "loss", "bound"),
    [
        (0, 0, 100, 0.0, 0.0),  # the same labels: nothing lost, nothing uncertain
        (6, 0, 300, 0.02, 0.02 + 1.645 * np.sqrt(6 - 36 / 300) / 300),
        (9, 9, 954, 0.0, 1.645 * np.sqrt(18) / 954),  # equal accuracy, 18 labels changed: bound 0.0073
    ],
)
def test_int8_loss_bound_is_the_paired_upper_bound(b: int, c: int, n: int, loss: float, bound: float) -> None:
    from apps.sentiment.training import int8_loss_bound

    gold = np.zeros(n, dtype=int)
    reference = np.zeros(n, dtype=int)
    reference[b : b + c] = 1  # fp32 wrong on texts b..b+c, right elsewhere
    pred = np.zeros(n, dtype=int)
    pred[:b] = 2  # int8 wrong on the first b
    got = int8_loss_bound(reference, pred, gold)
    assert got[0] == pytest.approx(loss) and got[1] == pytest.approx(bound) and got[2] == pytest.approx((b + c) / n)


def test_feed_forward_outputs_are_named_from_the_weights(embedder_path: Path) -> None:
    from apps.sentiment.classifier import ffn_output_layers

    layers = ffn_output_layers(embedder_path)  # all-MiniLM-L6-v2: six layers, attention outputs excluded
    assert layers == [f"encoder.layer.{i}.output.dense" for i in range(6)]


def test_train_register_load_predict_end_to_end(tmp_path: Path, embedder_path: Path) -> None:
    """A few real MiniLM steps on tweets → registered (int8 + temperature) → newest served, in order."""
    import torch

    from apps.sentiment.classifier_data import prepare_twitter_splits
    from apps.sentiment.training import candidate_config, register_model
    from models.finetune import finetune

    src = _twitter(tmp_path / "tw.csv", n_per_class=12)
    splits = prepare_twitter_splits(tmp_path / "splits", src, val_fraction=0.25)
    cfg = candidate_config(
        "minilm-pbtw", splits, tmp_path / "runs", model=str(embedder_path), max_steps=3, batch_size=8
    )
    finetune(cfg, log=lambda s: None)
    home = tmp_path / "home"
    first = register_model(home, [cfg.output_dir], "tiny", splits, {"train": "tiny"}, log=lambda s: None)
    man = json.loads((first / "manifest.json").read_text())
    assert man["kind"] == "tiny" and man["quantize"] is True
    assert man["quantization"]["val_accuracy_fp32"] >= 0 and man["quantization"]["int8_tried"]  # chosen on validation
    assert "classifier" in man["keep_float"]
    assert 0.05 <= man["calibration"]["temperature"] <= 20
    assert {"val_ece_before", "val_ece_after", "test_ece_before", "test_ece_after"} <= set(man["calibration"])
    assert not [p for p in first.rglob("*") if p.suffix in (".pt", ".pkl", ".bin", ".pickle")]
    assert [p.name for p in (first / "members" / "0").glob("*.safetensors")]

    clf = load_latest(home, batch_size=2)
    assert clf.name == first.name
    texts = ["$AAPL soars after record results", "short", "$XYZ slumps after results, guidance cut sharply lower"]
    preds = clf.predict(texts)
    assert len(preds) == 3
    for p in preds:
        assert p.label in LABELS and set(p.probabilities) == set(LABELS)
        assert math.isclose(sum(p.probabilities.values()), 1.0, abs_tol=1e-6)
        assert p.label == max(p.probabilities, key=p.probabilities.__getitem__)
    rev = clf.predict(texts[::-1])  # batched and length-sorted inside, returned in input order
    for a, b in zip(preds, rev[::-1], strict=True):
        assert a.label == b.label
        assert all(math.isclose(a.probabilities[k], b.probabilities[k], abs_tol=1e-5) for k in LABELS)
    same, vectors = clf.predict_with_vectors(texts)  # one pass: the same predictions + sentence vectors
    assert [p.label for p in same] == [p.label for p in preds]
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    _, rev_vectors = clf.predict_with_vectors(texts[::-1])
    assert np.allclose(rev_vectors[::-1], vectors, atol=1e-5)  # returned in input order
    assert clf.info()["runtime"] == "onnx"  # served by ONNX Runtime; the torch form shows the layers
    member = RegisteredClassifier(first, runtime="torch").load()._members[0]  # vector: layer 4 of 6's token mean
    assert member.vector_layer == 4
    with torch.inference_mode():
        layers = member.model(**member.tokenizer(texts[:1], return_tensors="pt"), output_hidden_states=True)
    cos = [float(torch.nn.functional.cosine_similarity(h[0].mean(0), torch.from_numpy(vectors[0]), dim=0))
           for h in layers.hidden_states]  # fmt: skip
    assert cos[4] > 0.95 and cos[4] == max(cos)  # int8 activations scale per batch: not bit-equal
    assert clf.predict_with_vectors([])[1].shape == (0, 384)
    info = clf.info()
    assert info["kind"] == "tiny" and info["version"] == first.name and info["size"]["disk_bytes"] > 1e6
    assert "accuracy" in info["metrics"]["test"]

    second = register_model(home, [cfg.output_dir], "tiny2", splits, {"train": "tiny"}, log=lambda s: None)
    assert load_latest(home).name == second.name  # the newest registered model is served
    t0 = time.monotonic()
    assert ensure_default_model(home, embedder_path, log=lambda s: None) == second  # idempotent: no training
    assert train_default(home, embedder_path=embedder_path, log=lambda s: None) == second
    assert time.monotonic() - t0 < 5


def test_train_chosen_recipes_register_models(tmp_path: Path, embedder_path: Path) -> None:
    """``kgnlp sentiment train``'s code path on tiny PhraseBank-format data (2 steps per run)."""
    from apps.sentiment.training import train_chosen

    data = tmp_path / "data"
    _phrasebank(data / "financial_phrasebank")
    (data / "twitter_financial_news_sentiment").mkdir()
    _twitter(data / "twitter_financial_news_sentiment" / "sent_train.csv")
    home = tmp_path / "home"
    kw = {"embedder_path": embedder_path, "train_overrides": {"max_steps": 2, "batch_size": 8}, "log": lambda s: None}
    first = train_chosen(home, data, "minilm-pbtw", **kw)
    man = json.loads((first / "manifest.json").read_text())
    assert man["recipe"] == "minilm-pbtw" and "PhraseBank" in man["data"]["train"]
    assert man["train_overrides"] == {"max_steps": 2, "batch_size": 8}  # a model says how it was trained
    assert man["metrics"]["test"]["allagree_n"] > 0
    second = train_chosen(home, data, "distill:minilm-pbtw:2", **kw)
    student = json.loads((second / "members" / "0" / "config.json").read_text())
    assert student["num_hidden_layers"] == 2
    assert load_latest(home).name == second.name
    assert "+ 30 tweets" in json.loads((second / "manifest.json").read_text())["data"]["train"]  # the transfer set
    third = train_chosen(home, data, "distill:minilm-pbtw:2:pb", **kw)  # PhraseBank alone as transfer set
    assert "tweets" not in json.loads((third / "manifest.json").read_text())["data"]["train"]
    with pytest.raises(NotFoundError, match="PhraseBank"):
        train_chosen(home, tmp_path / "nowhere", **kw)


@pytest.mark.slow
def test_setup_builds_a_useful_default_model_from_shipped_data(tmp_path: Path, embedder_path: Path) -> None:
    """``kgnlp sentiment setup --train`` in a fresh home: shipped tweets only, beats the majority class clearly."""
    t0 = time.monotonic()
    folder = train_default(tmp_path, embedder_path=embedder_path, log=lambda s: None, train=True)
    minutes = (time.monotonic() - t0) / 60
    man = json.loads((folder / "manifest.json").read_text())
    test = man["metrics"]["test"]
    val_labels = [LABELS[y] for y in read_split(tmp_path / "sentiment/work/default/splits/val.csv")[1]]
    majority = max(val_labels.count(x) for x in LABELS) / len(val_labels)
    assert test["accuracy"] > majority + 0.1 and test["macro_f1"] > 0.6, (test, majority)
    assert man["calibration"]["test_ece_after"] <= man["calibration"]["test_ece_before"] + 0.01
    assert minutes < 10  # ≤ 5 on a quiet 2-core machine; shared CI cores are slower


def test_prepare_splits_on_the_real_phrasebank(shared_data: Path, tmp_path: Path) -> None:
    info = prepare_splits(tmp_path, shared_data / "financial_phrasebank", None)
    tr, te = read_split(info.train), read_split(info.test)
    assert not set(tr[0]) & set(te[0])
    assert len(te[0]) >= 900  # issue #21: a test part of at least 900 sentences
    assert 0.23 < len(te[0]) / (len(tr[0]) + len(te[0]) + info.counts["val"]) < 0.25
    assert 0.35 < info.counts["test_allagree"] / info.counts["test"] < 0.6


def test_recipes_parse_and_bad_ones_name_the_form() -> None:
    from apps.sentiment.training import parse_recipe

    assert parse_recipe("mpnet-pb") == ("single", ["mpnet-pb"], 0, "pbtw")
    assert parse_recipe("distill:mpnet-pb:6") == ("distill", ["mpnet-pb"], 6, "pbtw")
    assert parse_recipe("distill:mpnet-pb:6:pb") == ("distill", ["mpnet-pb"], 6, "pb")
    assert parse_recipe("ensemble:minilm-pb+mpnet-pb")[1] == ["minilm-pb", "mpnet-pb"]
    for bad in ("distill:mpnet-pb:6:tweets", "distill:mpnet-pb:7", "distill:mpnet-pb", "smollm2-lora-pb", "x:y:z:w:v"):
        with pytest.raises(ConfigurationError, match="recipe"):
            parse_recipe(bad)


def test_token_batches_bound_padding_and_keep_every_text() -> None:
    from apps.sentiment.classifier import token_batches

    lengths = [5] * 70 + [40] * 10 + [128, 1500, 3000]
    batches = token_batches(lengths, max_texts=64, max_tokens=2048)
    assert sorted(k for b in batches for k in b) == list(range(len(lengths)))
    assert all(len(b) <= 64 for b in batches)
    assert all(len(b) * max(lengths[k] for k in b) <= 2048 or len(b) == 1 for b in batches)
    assert batches[-1] == [82]  # a text longer than the budget alone
    assert [len(b) for b in batches] == [64, 16, 1, 1, 1]  # short texts fill whole batches
    assert token_batches([], 64, 2048) == []


def test_cli_train_passes_the_seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``kgnlp sentiment train --seed N`` trains with seed N (and the recipe's own seed without it)."""
    from typer.testing import CliRunner

    from apps.cli import app
    from apps.sentiment import training

    calls: list[dict[str, Any] | None] = []
    monkeypatch.setattr(training, "train_chosen", lambda *a, train_overrides=None, **k: calls.append(train_overrides))
    for args in (["--seed", "7"], []):
        result = CliRunner().invoke(app, ["sentiment", "train", "--home", str(tmp_path), *args])
        assert result.exit_code == 0, result.output
    assert calls == [{"seed": 7}, None]
    bad = CliRunner().invoke(app, ["sentiment", "train", "--home", str(tmp_path), "--seed", "-1"])
    assert bad.exit_code == 2 and "--seed" in bad.output and calls == [{"seed": 7}, None]  # refused before training

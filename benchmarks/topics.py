"""Topic tagging quality on the hand-labelled tweets ``data/finance/topics_labelled.jsonl``.

The served topic head (``apps/sentiment/topic_head.py``) is fitted on the ``train`` and ``tune``
parts exactly as the service fits it (the registered classifier's sentence vectors, the words' TF-IDF
and the keywords of ``topics.yaml``; C and threshold by 5-fold cross-validation on those parts) and scored once on
``test``. The similarity tagger (MiniLM similarity to the topics' descriptions and examples) is the
baseline: its threshold is chosen on the same fit parts. On ``test`` it also prints how well a second
annotator's labels (``data/finance/topics_test_second_annotator.jsonl``) agree with the labels scored.

    .venv/bin/python benchmarks/topics.py [--home KGNLP_HOME] [--split test] [--ablate]

``--ablate`` also prints what the head's choices bring, on the fit parts only (5-fold CV micro-F1,
the test part unread): the sentence vector from each encoder layer, and the head without words.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _matrix(topics: list[list[str]] | list[tuple[str, ...]], names: list[str]) -> np.ndarray:
    return np.array([[n in t for n in names] for t in topics], dtype=bool)


def _per_topic(pred: np.ndarray, gold: np.ndarray, names: list[str]) -> None:
    print(f"{'topic':<22} {'n':>4} {'P':>6} {'R':>6} {'F1':>6}")
    for j, n in enumerate(names):
        tp = float((pred[:, j] & gold[:, j]).sum())
        p = tp / max(pred[:, j].sum(), 1)
        r = tp / max(gold[:, j].sum(), 1)
        f = 2 * p * r / (p + r) if p + r else 0.0
        print(f"{n:<22} {int(gold[:, j].sum()):>4} {p:>6.3f} {r:>6.3f} {f:>6.3f}")


def _second_annotator_f1(held: list, names: list[str]) -> float | None:
    """Micro-F1 of the second annotator's ``test`` labels against the labels (None: no such file)."""
    import json

    from apps.sentiment.topic_head import micro_f1

    path = ROOT / "data" / "finance" / "topics_test_second_annotator.jsonl"
    if not path.is_file():
        return None
    second = {r["text"]: r["topics"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r}
    if any(r.text not in second for r in held):
        raise SystemExit(f"{path} does not cover every test text")
    return micro_f1(_matrix([second[r.text] for r in held], names), _matrix([r.topics for r in held], names))


def _layer_vectors(clf: object, texts: list[str]) -> np.ndarray:
    """``(layers + 1, n, hidden)``: every hidden layer's L2-normalised token mean (as the classifier
    computes its one served sentence vector), from the registered model's first member. Batches are
    in file order, not length-sorted as served: int8 activations scale per batch, so the served
    layer's row differs a little from the head's own cross-validation; compare the rows with each other."""
    import torch

    from apps.sentiment.classifier import RegisteredClassifier

    # the torch form gives every layer (the served ONNX graph only the one the head reads)
    member = RegisteredClassifier(clf.folder, runtime="torch").load()._members[0]  # type: ignore[attr-defined]
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            enc = member.tokenizer(texts[i : i + 64], truncation=True, max_length=member.max_len, padding=True,
                                   return_tensors="pt")  # fmt: skip
            hidden = member.model(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            means = [(h.float() * mask).sum(1) / mask.sum(1) for h in hidden]
            out.append(np.stack([torch.nn.functional.normalize(m, dim=-1).numpy() for m in means]))
    return np.concatenate(out, axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="KGNLP_HOME with a registered sentiment model")
    ap.add_argument("--split", default="test", help="the part scored (default: test; the head never sees it)")
    ap.add_argument("--max-topics", type=int, default=3)
    ap.add_argument("--ablate", action="store_true", help="also: CV micro-F1 per encoder layer and without words")
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)

    from apps.sentiment.classifier import load_latest
    from apps.sentiment.topic_head import (
        DEFAULT_LABELS,
        FIT_SPLITS,
        THRESHOLDS,
        KeywordMatcher,
        TopicHead,
        load_labelled,
        micro_f1,
    )
    from apps.sentiment.topics import TopicTagger, load_topics
    from kgnlp.files import default_home
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache

    if args.split in FIT_SPLITS:
        raise SystemExit(f"--split {args.split} is what the head is fitted on; score on another part")
    home = args.home or default_home()
    topics = load_topics()
    names = [t.name for t in topics]
    rows = load_labelled(DEFAULT_LABELS, names)
    fit = [r for r in rows if r.split in FIT_SPLITS]
    held = [r for r in rows if r.split == args.split]
    gold = _matrix([r.topics for r in held], names)
    clf = load_latest(home)
    print(f"sentiment model {clf.name}; fitted on {len(fit)} texts ({'+'.join(FIT_SPLITS)}), scored on {len(held)}")

    _, fit_vecs = clf.predict_with_vectors([r.text for r in fit])  # type: ignore[attr-defined]
    head = TopicHead.fit(
        names, KeywordMatcher([t.keywords for t in topics]), [r.text for r in fit], fit_vecs,
        [r.topics for r in fit], max_topics=args.max_topics,
    )  # fmt: skip
    _, held_vecs = clf.predict_with_vectors([r.text for r in held])  # type: ignore[attr-defined]
    pred = _matrix(head.tag([r.text for r in held], held_vecs), names)
    f1_head = micro_f1(pred, gold)
    print(f"topic head: {head.report}")
    if args.ablate:  # on the fit parts only: each row is TopicHead.fit's own cross-validation
        fit_texts, fit_topics = [r.text for r in fit], [r.topics for r in fit]
        layers = _layer_vectors(clf, fit_texts)
        served = clf.load()._members[0].vector_layer  # type: ignore[attr-defined]
        matcher = KeywordMatcher([t.keywords for t in topics])
        for layer in range(1, len(layers)):
            cv = TopicHead.fit(names, matcher, fit_texts, layers[layer], fit_topics, args.max_topics).report
            print(f"ablation: layer {layer}{' (served)' if layer == served else ''}: cv_micro_f1={cv['cv_micro_f1']}")
        cv = TopicHead.fit(
            names, matcher, fit_texts, layers[served], fit_topics, args.max_topics, word_min_df=None
        ).report
        print(f"ablation: layer {served}, no word features: cv_micro_f1={cv['cv_micro_f1']}")
    _per_topic(pred, gold, names)

    embedder = load_sentence_embedder(ModelCache(home).ensure("all-minilm-l6-v2"))
    tagger = TopicTagger(topics, lambda t: embedder.encode(t, normalize_embeddings=True), max_topics=args.max_topics)
    fit_scores, held_scores = tagger.scores([r.text for r in fit]), tagger.scores([r.text for r in held])
    fit_gold = _matrix([r.topics for r in fit], names)

    def tag_at(scores: np.ndarray, t: float) -> np.ndarray:
        tagger.threshold = t
        return _matrix(tagger.tag([""] * len(scores), scores=scores), names)

    grid = sorted({*THRESHOLDS, *np.round(np.arange(0.25, 0.6, 0.01), 2)})
    best_t = max(grid, key=lambda t: micro_f1(tag_at(fit_scores, t), fit_gold))
    f1_sim = micro_f1(tag_at(held_scores, best_t), gold)
    print(f"similarity baseline: threshold {best_t:.2f} (chosen on the fit parts) -> micro-F1 {f1_sim:.3f}")
    agreement = _second_annotator_f1(held, names) if args.split == "test" else None
    if agreement is not None:
        print(f"second annotator vs the labels (data/finance/SOURCE.md): micro-F1 {agreement:.3f}")
    print(f"command: .venv/bin/python benchmarks/topics.py --split {args.split}")
    print(
        f"topics_micro_f1={f1_head:.3f} topics_cv_f1={head.report['cv_micro_f1']:.3f} "
        f"similarity_micro_f1={f1_sim:.3f} fitted_on={len(fit)} n={len(held)}"
        + (f" annotator_agreement_f1={agreement:.3f}" if agreement is not None else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

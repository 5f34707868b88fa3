"""Topic tagging quality on the hand-labelled sample data/finance/topics_sample.jsonl.

The 80 headlines (written for this project, multi-label, some with no topic) are split in
half with a fixed seed: the similarity threshold is chosen on one half (best micro-F1) and
reported on the other, then the halves swap; the summary averages the two held-out halves.

    .venv/bin/python benchmarks/topics.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prf(pred: list[list[str]], gold: list[list[str]]) -> tuple[float, float, float]:
    tp = sum(len(set(p) & set(g)) for p, g in zip(pred, gold, strict=True))
    n_pred = sum(len(p) for p in pred)
    n_gold = sum(len(g) for g in gold)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-topics", type=int, default=3)
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it

    from apps.sentiment.topics import TopicTagger, load_topics
    from kgnlp.files import default_home
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache

    rows = [json.loads(x) for x in (ROOT / "data/finance/topics_sample.jsonl").read_text().splitlines() if x.strip()]
    embedder = load_sentence_embedder(ModelCache(default_home()).ensure("all-minilm-l6-v2"))
    tagger = TopicTagger(load_topics(), lambda t: embedder.encode(t, normalize_embeddings=True),
                         max_topics=args.max_topics)  # fmt: skip
    texts, gold = [r["text"] for r in rows], [r["topics"] for r in rows]
    scores = tagger.scores(texts)
    idx = list(range(len(rows)))
    random.Random(args.seed).shuffle(idx)
    halves = [idx[: len(idx) // 2], idx[len(idx) // 2 :]]
    grid = [round(x, 2) for x in np.arange(0.25, 0.71, 0.01)]
    held = []
    print(f"{'tune on':>8} {'threshold':>9} {'P':>6} {'R':>6} {'F1':>6}  (held-out half)")
    for k, (tune, test) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        best = max(grid, key=lambda t: prf(_tag(tagger, scores[tune], t), [gold[i] for i in tune])[2])
        p, r, f = prf(_tag(tagger, scores[test], best), [gold[i] for i in test])
        held.append((best, p, r, f))
        print(f"{'half ' + str(k):>8} {best:>9.2f} {p:>6.3f} {r:>6.3f} {f:>6.3f}")
    p, r, f = (float(np.mean([h[i] for h in held])) for i in (1, 2, 3))
    overall = max(grid, key=lambda t: prf(_tag(tagger, scores, t), gold)[2])
    print(f"threshold chosen on all {len(rows)} texts (the service default should match): {overall:.2f}")
    print(f"command: .venv/bin/python benchmarks/topics.py --seed {args.seed}")
    print(f"topics_P={p:.3f} topics_R={r:.3f} topics_F1={f:.3f} threshold={overall:.2f} n={len(rows)}")


def _tag(tagger, scores: np.ndarray, threshold: float) -> list[list[str]]:  # type: ignore[no-untyped-def]
    tagger.threshold = threshold
    return tagger.tag([""] * len(scores), scores=scores)


if __name__ == "__main__":
    main()

"""Do the synthetic corporate-news sentences leak PhraseBank's test part into training?

The shipped synthetic sentences (``data/finance/sentiment/synthetic_corporate_news*.jsonl``) share
no 6-word run with a PhraseBank sentence (checked when they were added). This checks paraphrase-level
closeness too: for every sentence of the PhraseBank test part (``benchmarks/sentiment.py``'s 68/8/24
split) the highest ``rapidfuzz.fuzz.ratio`` (0-100, lower-cased, spaces collapsed) to any synthetic
sentence, how many test sentences are ``near`` (≥ ``--near``), and each named run's test accuracy on
the near and the far sentences (from the run's ``probs.npz``). A gain from the synthetic sentences that
held only on the near ones would be leakage; one that holds on the far ones is not.

    .venv/bin/python benchmarks/synthetic_overlap.py [--runs mpnet-pb,mpnet-pbsyn] [--near 70]

Needs ``runs/sentiment/splits_pb/test.csv`` and the runs' ``probs.npz`` (``benchmarks/sentiment.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "sentiment", help="benchmarks/sentiment.py's --out")
    ap.add_argument("--runs", default="minilm-pb,minilm-pbsyn,mpnet-pb,mpnet-pbsyn")
    ap.add_argument("--near", type=float, default=70.0, help="ratio from which a test sentence counts as near")
    args = ap.parse_args()
    from rapidfuzz import fuzz, process

    from apps.sentiment.classifier_data import load_labelled_jsonl, shipped_synthetic_jsonl
    from apps.sentiment.training import read_split

    test_csv = args.out / "splits_pb" / "test.csv"
    if not test_csv.is_file():
        print(f"{test_csv} not found: run benchmarks/sentiment.py first")
        return 2

    def norm(s: str) -> str:
        return " ".join(s.lower().split())

    synthetic = [norm(t) for part in ("split", "more") for t, _ in load_labelled_jsonl(shipped_synthetic_jsonl(part))]
    texts, labels, _ = read_split(test_csv)
    y = np.asarray(labels)
    best = process.cdist([norm(t) for t in texts], synthetic, scorer=fuzz.ratio, workers=-1).max(1)
    near = best >= args.near
    pct = {q: round(float(np.percentile(best, q)), 1) for q in (50, 90, 99, 100)}
    print(f"{len(texts)} PhraseBank test sentences x {len(synthetic)} synthetic: best ratio percentiles {pct}")
    for th in (60, 70, 80, 90):
        print(f"  test sentences with a synthetic sentence at ratio >= {th}: {int((best >= th).sum())}")
    figures = {"near": str(int(near.sum())), "max_ratio": f"{best.max():.1f}"}
    for run in [r for r in args.runs.split(",") if r]:
        probs = args.out / run / "probs.npz"
        if not probs.is_file():
            print(f"{run}: no {probs}, skipped")
            continue
        pred = np.load(probs)["test"].argmax(1)
        far_acc, near_acc = float(np.mean(pred[~near] == y[~near])), float(np.mean(pred[near] == y[near]))
        print(f"{run}: accuracy all {np.mean(pred == y):.4f}, far ({int((~near).sum())}) {far_acc:.4f}, "
              f"near ({int(near.sum())}) {near_acc:.4f}")  # fmt: skip
        figures[f"far_acc_{run}"] = f"{far_acc:.4f}"
    print(f"command: .venv/bin/python benchmarks/synthetic_overlap.py --runs {args.runs} --near {args.near:g}")
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Retrieval quality on Bitext customer support and BANKING77: every mode in one run.

Bitext: rows are split per intent (seed 0, 20 % held out). The corpus is the distinct
responses of the remaining rows; the queries are the held-out instructions; relevant =
every corpus document of the query's intent. The graph for the graph modes is the
``retail`` demo recipe (kg/demo.py) built from the same training rows only, so the
intent examples and document questions it carries (which the graph modes' k-NN
example voter searches) never include a query. The voter's settings were tuned on a
validation split carved from the training rows (split_by_intent(train, 1000 + seed)),
not on the held-out queries reported here.

BANKING77: train.csv split per intent the same way; the corpus is the remaining
utterances, the queries the held-out ones, relevant = same intent (no graph).

R@k is the hit rate (a relevant document in the top k); MRR@10 and nDCG@10 use binary
relevance. Run:  .venv/bin/python benchmarks/retrieval.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from apps.customer_service.sft_data import split_by_intent  # noqa: E402
from kgnlp.files import default_home  # noqa: E402
from retrieval.corpus import Corpus, as_embedder, graph_context_for, read_banking77, read_bitext  # noqa: E402
from retrieval.evaluate import evaluate_rankings  # noqa: E402
from retrieval.retriever import Retriever  # noqa: E402

BITEXT = "bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv"
SINGLE = ("dense", "lexical", "graph")


def evaluate(r: Retriever, queries: list[tuple[str, str]], intent_of: dict[str, str], modes: list[str]) -> dict:
    relevant: dict[str, set[str]] = defaultdict(set)
    for d, it in intent_of.items():
        relevant[it].add(d)
    r.embedder.embed([q for q, _ in queries])  # embed once: ms/query below excludes query embedding
    out = {}
    for mode in modes:
        t0 = time.perf_counter()
        runs = [(r.ranked_ids(q, mode, 10), relevant[it]) for q, it in queries]  # type: ignore[arg-type]
        m = evaluate_rankings(runs)
        m["ms/query"] = 1000 * (time.perf_counter() - t0) / max(1, len(queries))
        out[mode] = m
    return out


def table(title: str, res: dict, n_docs: int, n_q: int) -> str:
    lines = [
        f"\n{title}: {n_docs} documents, {n_q} queries",
        "| mode | R@1 | R@5 | MRR@10 | nDCG@10 | ms/query (excl. embedding) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, m in res.items():
        lines.append(
            f"| {mode} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['MRR@10']:.3f} | {m['nDCG@10']:.3f} "
            f"| {m['ms/query']:.1f} |"
        )
    return "\n".join(lines)


def bitext(  # type: ignore[no-untyped-def]
    shared: Path, emb, seed: int, max_queries: int | None, validate: bool = False, voter: dict | None = None
) -> tuple[dict, int, int]:
    from kg.demo import build_demo
    from kg.ladybug_store import LadybugStore
    from kg.linking import Linker

    with (shared / BITEXT).open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    train, test = split_by_intent(rows, seed, 0.2)
    if validate:  # tune on a validation split of the training rows; the held-out rows stay unseen
        train, test = split_by_intent(train, 1000 + seed, 0.2)
    if max_queries:
        test = random.Random(seed).sample(test, min(max_queries, len(test)))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        with (src / "bitext_customer_support.csv").open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(train)
        (src / "bestbuy_categories.json").write_text("[]")  # the product taxonomy plays no part here
        docs = read_bitext(src / "bitext_customer_support.csv")
        t0 = time.perf_counter()
        corpus = Corpus.build("bitext-bench", docs, emb)
        print(f"bitext: indexed {len(docs)} documents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        store = LadybugStore.open(Path(tmp) / "graph")
        try:
            build_demo("retail", store, src)
            graph = graph_context_for("retail", store, Linker.from_store(store), emb)
            for key, value in (voter or {}).items():  # tuning overrides (--validate runs)
                if key == "hit_vote_weight":
                    graph.hit_vote_weight = value
                elif graph.example_voter is not None:
                    setattr(graph.example_voter, key, value)
            r = corpus.retriever(emb, graph=graph)
            intent_of = {d.id: d.metadata["intent"] for d in docs}
            queries = [(q["instruction"], q["intent"]) for q in test]
            res = evaluate(r, queries, intent_of, ["dense", "lexical", "graph", "hybrid", "hybrid+graph"])
        finally:
            store.close()
    return res, len(docs), len(queries)


def banking77(shared: Path, emb, seed: int, max_queries: int | None) -> tuple[dict, int, int]:  # type: ignore[no-untyped-def]
    docs = read_banking77(shared / "banking77" / "train.csv")
    rows = [{"id": d.id, "intent": d.metadata["intent"], "text": d.text} for d in docs]
    train, test = split_by_intent(rows, seed, 0.2)
    if max_queries:
        test = random.Random(seed).sample(test, min(max_queries, len(test)))
    keep = {r["id"] for r in train}
    cdocs = [d for d in docs if d.id in keep]
    t0 = time.perf_counter()
    corpus = Corpus.build("banking77-bench", cdocs, emb)
    print(f"banking77: indexed {len(cdocs)} documents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    r = corpus.retriever(emb)
    intent_of = {d.id: d.metadata["intent"] for d in cdocs}
    res = evaluate(r, [(q["text"], q["intent"]) for q in test], intent_of, ["dense", "lexical", "hybrid"])
    return res, len(cdocs), len(test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--home", type=Path, default=default_home(), help="model cache and embedding cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-queries", type=int, default=None, help="subsample queries (quick runs)")
    ap.add_argument("--skip-banking77", action="store_true")
    ap.add_argument(
        "--validate", action="store_true", help="Bitext only, on a validation split of the training rows (for tuning)"
    )
    ap.add_argument("--hit-vote-weight", type=float, default=None, help="override GraphContext.hit_vote_weight")
    ap.add_argument("--voter", choices=("linear", "knn"), default=None, help="override the example voter's method")
    ap.add_argument("--c-dense", type=float, default=None, help="override the linear voter's C (embeddings)")
    ap.add_argument("--c-hybrid", type=float, default=None, help="override the linear voter's C (+ TF-IDF)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it
    if not (a.shared / BITEXT).exists():
        print(f"skipped: {a.shared / BITEXT} is absent (the datasets are not part of a clone)")
        return
    from models.provision import ModelCache

    emb = as_embedder(ModelCache(a.home).resolve("all-minilm-l6-v2"), a.home)
    # graph/voter settings to override (flag -> attribute), for tuning on --validate
    flags = {"hit_vote_weight": "hit_vote_weight", "voter": "method", "c_dense": "c_dense", "c_hybrid": "c_hybrid"}
    given = {flag: getattr(a, flag) for flag in flags if getattr(a, flag) is not None}
    cmd = "  ".join(
        [
            "command:",
            ".venv/bin/python benchmarks/retrieval.py"
            + (f" --max-queries {a.max_queries}" if a.max_queries else "")
            + (f" --seed {a.seed}" if a.seed else "")
            + (" --validate" if a.validate else "")
            + "".join(f" --{flag.replace('_', '-')} {value}" for flag, value in given.items()),
        ]
    )
    res, nd, nq = bitext(a.shared, emb, a.seed, a.max_queries, a.validate, {flags[f]: v for f, v in given.items()})
    print(table("Bitext customer support (responses indexed, held-out instructions as queries)", res, nd, nq))
    best = max(res, key=lambda m: (res[m]["R@1"], res[m]["MRR@10"]))
    beats = all(res[best]["R@1"] > res[s]["R@1"] for s in SINGLE if s != best)
    summary = (
        f"bitext_best_mode={best} R@1={res[best]['R@1']:.3f} R@5={res[best]['R@5']:.3f} "
        f"MRR@10={res[best]['MRR@10']:.3f} nDCG@10={res[best]['nDCG@10']:.3f} "
        f"beats_single_modes={'yes' if beats else 'no'} target_R@1>=0.95="
        f"{'met' if res[best]['R@1'] >= 0.95 else 'missed'}"
    )
    out = {"bitext": res}
    if a.validate:
        summary = "validation: " + summary
    if not a.skip_banking77 and not a.validate and (a.shared / "banking77" / "train.csv").exists():
        bres, bnd, bnq = banking77(a.shared, emb, a.seed, a.max_queries)
        print(table("BANKING77 (train utterances indexed, held-out utterances as queries)", bres, bnd, bnq))
        bb = max(bres, key=lambda m: (bres[m]["R@1"], bres[m]["MRR@10"]))
        summary += (
            f" banking77_best_mode={bb} banking77_R@1={bres[bb]['R@1']:.3f} banking77_MRR@10={bres[bb]['MRR@10']:.3f}"
        )
        out["banking77"] = bres
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    print()
    print(cmd)
    print(summary)


if __name__ == "__main__":
    main()

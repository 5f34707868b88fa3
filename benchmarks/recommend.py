"""Recommendation quality, training time and API latency on Last.fm (HetRec 2011) + the KGCN music KG.

Data: ../shared/data/hetrec2011-lastfm-2k and kgcn-music-kg (non-commercial; read, never shipped).
The catalogue is read the way the service reads it: written to a ladybug graph
(``recommend-lastfm``) and the SQL interaction log, then read back (see
``apps/recommend/catalogue_graph.py``). Compared in one run: popularity, BPR-MF, LightGCN (PyG),
the KG-attention model on the collaborative KG, the MiniLM text tower, raw text similarity, and the
learned ranker.

    .venv/bin/python benchmarks/recommend.py [--source ../shared/data] [--epochs-scale 1.0] [--requests 300]
        [--llm-interest]   # + the LLM-interest ablation (after `benchmarks/recommend_interest.py train-adapter`)

1. KGCN protocol: every KG-mapped play is a positive, one sampled negative per positive (seed 555),
   6:2:2 row split; AUC and F1 (threshold 0.5 on probabilities fitted on the validation rows).
   KGCN paper: AUC .794-.796, F1 .719-.721. Target: AUC >= 0.81, F1 >= 0.73.
2. Top-K: per-user 60/20/20 leave-out, rank all 3,846 items minus train/valid items; Recall@20,
   NDCG@20; cold slice = test items with <= 2 training interactions.
3. Latency: POST /recommend (k=20, template explanations) over real HTTP against the ranker fitted
   in step 2, for random known users; p50/p95 in ms. Also the in-process time.

Prints what it measured and ends with one summary line of NAME=value pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _latency(rec: Any, n_requests: int, home: Path) -> dict[str, float]:
    import httpx
    import numpy as np

    from apps.core.services import Component, Services
    from apps.core.settings import load_settings
    from apps.main import create_app
    from apps.recommend.feedback import FeedbackStore
    from apps.recommend.service import RecommendService
    from tests.conftest import LiveServer

    settings = load_settings(home=home, database_url=f"sqlite:///{home / 'state.sqlite'}")
    services = Services(settings=settings)
    services.recommend = RecommendService(rec, FeedbackStore(settings.db_url).open())
    services.components["recommend"] = Component("recommend", "ready", {})
    rng = np.random.default_rng(0)
    users = [rec.catalogue.user_ids[u] for u in rng.integers(0, rec.catalogue.n_users, n_requests)]
    t_in = []
    for u in users[:100]:
        t0 = time.perf_counter()
        services.recommend.recommend_sync(u, [], 20)
        t_in.append((time.perf_counter() - t0) * 1000)
    times = []
    with LiveServer(create_app(settings, services=services)) as live, httpx.Client(base_url=live.url) as c:
        for u in users[:10]:  # warm-up
            c.post("/recommend", json={"user_id": u, "k": 20})
        for u in users:
            t0 = time.perf_counter()
            r = c.post("/recommend", json={"user_id": u, "k": 20})
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and len(r.json()["items"]) == 20, r.text
    services.close()
    q = statistics.quantiles(times, n=20)
    return {"p50_ms": statistics.median(times), "p95_ms": q[18], "inproc_p50_ms": statistics.median(t_in),
            "requests": len(times)}  # fmt: skip


def _through_graph_store(cat: Any) -> tuple[Any, dict[str, float]]:
    """The catalogue as the service trains on it: written to a ladybug graph + the SQL event log, read back."""
    from apps.recommend.catalogue_graph import catalogue_rows, read_catalogue, write_catalogue
    from apps.recommend.interactions import InteractionLog
    from kg.registry import GraphRegistry

    with tempfile.TemporaryDirectory() as tmp, GraphRegistry(Path(tmp) / "graphs") as graphs, \
            InteractionLog(f"sqlite:///{Path(tmp) / 'state.sqlite'}") as log:  # fmt: skip
        store = graphs.get("recommend-lastfm", create=True)
        t0 = time.perf_counter()
        write_catalogue(store, cat, source="lastfm")
        log.add("lastfm", catalogue_rows(cat))
        t1 = time.perf_counter()
        back = read_catalogue(store, "lastfm", log.rows("lastfm"), cat.meta)
        t2 = time.perf_counter()
    assert back.n_items == cat.n_items and len(back.interactions) == len(cat.interactions), "graph round trip lost data"
    return back, {"write_s": t1 - t0, "read_s": t2 - t1}


def _interest_ablation(args: argparse.Namespace) -> str:
    """Run the LLM-interest ablation (its own script, its own process) and return its figures as summary fields."""
    import subprocess

    print("\n== LLM interest score as a ranker feature (benchmarks/recommend_interest.py ablation) ==", flush=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "recommend_interest.py"), "ablation", "--source",
           str(args.source), "--threads", str(args.threads), "--ctr-users", "300", "--topk-valid-users", "60",
           "--topk-users", "100"]  # fmt: skip
    print(" ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    print(out.stdout[-4000:], out.stderr[-2000:] if out.returncode else "", flush=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("AUC_base=") and "adapter=yes" in ln]
    if out.returncode or not lines:
        return f" llm_interest=failed_rc{out.returncode}"
    keep = ("AUC_base", "AUC_llm", "F1_llm", "R@20_base", "R@20_llm", "llm_ms_per_request")
    fields = dict(kv.split("=", 1) for kv in lines[-1].split() if "=" in kv)
    return " " + " ".join(f"{k}={fields[k]}" for k in keep if k in fields)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every model's epochs")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="per-model training time cap")
    ap.add_argument("--no-tags", action="store_true", help="ablation: drop Last.fm tags (text = names, KG only)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--llm-interest",
        action="store_true",
        help="also run the LLM-interest ablation (benchmarks/recommend_interest.py ablation; needs its adapter: "
        "`recommend_interest.py train-adapter`; ~25 min more); its figures join the summary line",
    )
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it

    import torch

    torch.set_num_threads(args.threads)
    from apps.recommend.evaluate import evaluate_ctr, evaluate_topk
    from apps.recommend.lastfm import load_lastfm
    from apps.recommend.models.text import encode_items
    from apps.recommend.train import FitConfig
    from kgnlp.files import default_home
    from models.loading import load_sentence_embedder

    t_all = time.perf_counter()
    cat = load_lastfm(args.source)
    if args.no_tags:
        from dataclasses import replace

        keep_rows = cat.triples[:, 1] != cat.relations.index("has_tag")
        cat = replace(cat, item_tags=[[] for _ in cat.item_tags], triples=cat.triples[keep_rows])
        print("ablation: tags dropped (item text = artist name only; no has_tag edges)")
    cat, graph_s = _through_graph_store(cat)
    print(f"Last.fm: {cat.n_users} users, {cat.n_items} items, {len(cat.interactions)} plays, "
          f"{cat.n_entities} entities, {len(cat.triples)} triples; read from the graph store "
          f"(ladybug write {graph_s['write_s']:.1f}s, read {graph_s['read_s']:.1f}s)")  # fmt: skip
    home = default_home()
    t0 = time.perf_counter()
    embedder = load_sentence_embedder(home / "models" / "all-minilm-l6-v2")
    text = encode_items([cat.item_text(i) for i in range(cat.n_items)], embedder, home / "recommend" / "cache")
    text_s = time.perf_counter() - t0
    print(f"item texts encoded (MiniLM, cached by content): {text_s:.1f}s")
    cfg = FitConfig().scaled(args.epochs_scale)
    for tc in (cfg.bpr, cfg.lightgcn, cfg.kg, cfg.text):
        tc.max_seconds = args.max_seconds  # epochs, not the wall clock, decide (reproducible on a busy host)

    print("\n== KGCN protocol (AUC / F1 on test rows) ==")
    ctr = evaluate_ctr(cat, text, cfg, report=print)
    print(f"{'model':12} {'AUC':>7} {'F1':>7}")
    for name, m in ctr["models"].items():
        print(f"{name:12} {m['auc']:7.4f} {m['f1']:7.4f}")
    print(f"ranker weights (standardised): {ctr['ranker_weights']}; train {ctr['train_s']}s {ctr['model_seconds']}")

    print("\n== Top-20 over all items (per-user leave-out) ==")
    keep: dict[str, Any] = {}
    topk = evaluate_topk(cat, text, cfg, k=20, report=print, keep=keep)
    print(f"{'model':12} {'R@20':>7} {'NDCG@20':>8} {'coldR@20':>9} {'coldNDCG':>9}")
    for name, m in topk["models"].items():
        print(f"{name:12} {m['recall']:7.4f} {m['ndcg']:8.4f} {m['cold_recall']:9.4f} {m['cold_ndcg']:9.4f}")
    print(
        f"users {topk['users']}, cold-slice users {topk['cold_users']}; "
        f"train {topk['train_s']}s {topk['model_seconds']}"
    )

    print("\n== /recommend latency (k=20, real HTTP) ==")
    with tempfile.TemporaryDirectory() as tmp:
        lat = _latency(keep["recommender"], args.requests, Path(tmp))
    print(json.dumps({k: round(v, 2) for k, v in lat.items()}))
    total = time.perf_counter() - t_all
    if args.json:
        args.json.write_text(json.dumps({"ctr": ctr, "topk": topk, "latency": lat, "total_s": total}, indent=2))
    interest = _interest_ablation(args) if args.llm_interest else ""
    r, t = ctr["models"]["ranker"], topk["models"]
    print(
        f"AUC={r['auc']:.4f} F1={r['f1']:.4f} R@20={t['ranker']['recall']:.4f} NDCG@20={t['ranker']['ndcg']:.4f} "
        f"best_single_R@20={max(v['recall'] for k, v in t.items() if k != 'ranker'):.4f} "
        f"cold_R@20_text={t['text_tower']['cold_recall']:.4f} cold_R@20_pop={t['popularity']['cold_recall']:.4f} "
        f"p50_ms={lat['p50_ms']:.1f} p95_ms={lat['p95_ms']:.1f} train_s={ctr['train_s'] + topk['train_s']:.0f} "
        f"graph_read_s={graph_s['read_s']:.1f} total_s={total:.0f}{interest}"
    )


if __name__ == "__main__":
    main()

"""Benchmark: bulk ingest into the embedded graph store, 2-hop query latency, entity linking.

Measures, on this machine:
1. end-to-end ingest throughput (read + validate + dedupe + stage + COPY + commit) of
   FB15k-237's training triples into a fresh ladybug store (median of ``--repeats``);
2. p50/p95 latency of 2-hop neighbourhood queries (both directions) from random seeds;
3. entity-linking precision/recall on a labelled sample built from the finance demo graph.

Reads FB15k-237 from ../shared/data (or ``--data`` / ``KGNLP_SHARED_DATA``); exits 0 with a
message when it is absent. Ends with one summary line of NAME=value pairs.

Run: python benchmarks/kg_ingest.py [--data DIR] [--repeats 3] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kg.ingest import ingest_path  # noqa: E402
from kg.ladybug_store import LadybugStore  # noqa: E402


def default_data() -> Path:
    env = os.environ.get("KGNLP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def bench_ingest(train: Path, work: Path, repeats: int) -> tuple[float, LadybugStore]:
    rates = []
    store = None
    for i in range(repeats):
        if store is not None:
            store.close()
        d = work / f"fb-{i}"
        shutil.rmtree(d, ignore_errors=True)
        store = LadybugStore.open(d)
        rep = ingest_path(store, train, "triples")
        rates.append(rep.triples_per_s)
        print(
            f"ingest run {i + 1}: {rep.relations} triples, {rep.result.entities_added} entities "
            f"in {rep.seconds:.3f} s -> {rep.triples_per_s:,.0f} triples/s"
        )
    t0 = time.perf_counter()
    again = ingest_path(store, train, "triples")
    print(f"re-ingest of the same file: {again.result.changed} changes, {time.perf_counter() - t0:.2f} s")
    assert store is not None
    return statistics.median(rates), store


def bench_queries(store: LadybugStore, n: int, limit: int, seed: int = 0) -> tuple[float, float]:
    ids = [e.id for e in store.iter_entities()]
    rng = random.Random(seed)
    seeds = rng.sample(ids, min(n, len(ids)))
    store.neighbors(seeds[0], hops=2)  # warm-up
    lat = []
    sizes = []
    for s in seeds:
        t0 = time.perf_counter()
        sub = store.neighbors(s, hops=2, direction="both", limit=limit)
        lat.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(sub.entities))
    lat.sort()
    p50 = lat[len(lat) // 2]
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
    print(
        f"2-hop neighbourhood (both directions, limit {limit}, entities+paths materialised) "
        f"over {len(seeds)} random seeds: p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
        f"median size {statistics.median(sizes):.0f} entities"
    )
    return p50, p95


def bench_linking(work: Path) -> tuple[float, float] | None:
    try:
        from kg.demo import build_demo
        from kg.linking import Linker, linking_sample
    except ImportError as e:  # pragma: no cover
        print(f"linking benchmark skipped: {e}")
        return None
    with LadybugStore.open(work / "finance") as store:
        build_demo("finance", store, None)
        linker = Linker.from_store(store)
        sample = linking_sample(store, n=300, seed=0)
    tp = fp = fn = 0
    for text, gold in sample:
        pred = {m.entity_id for m in linker.link(text)}
        tp += len(pred & gold)
        fp += len(pred - gold)
        fn += len(gold - pred)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    print(
        f"entity linking on {len(sample)} labelled finance sentences: "
        f"precision {p:.3f} recall {r:.3f} (tp={tp} fp={fp} fn={fn})"
    )
    return p, r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--limit", type=int, default=100, help="neighbour cap (API default 100)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it
    train = args.data / "kge_benchmarks" / "FB15k-237" / "train.txt"
    cmd = (
        f"python benchmarks/kg_ingest.py --data {args.data} --repeats {args.repeats} "
        f"--queries {args.queries} --limit {args.limit}"
    )
    if not train.exists():
        print(f"skipped: {train} not found (set --data or KGNLP_SHARED_DATA)")
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kg-bench-"))
    try:
        rate, store = bench_ingest(train, work, args.repeats)
        p50, p95 = bench_queries(store, args.queries, args.limit)
        store.close()
        link = bench_linking(work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = f"triples_per_s={rate:.0f} p50_ms={p50:.2f} p95_ms={p95:.2f}"
    if link:
        summary += f" link_precision={link[0]:.3f} link_recall={link[1]:.3f}"
    print(f"reproduce with: {cmd}")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

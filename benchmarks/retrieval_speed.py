"""Retrieval latency: hybrid retrieval at 10k real passages, FAISS IVF at 1M synthetic vectors.

Part A indexes 10,000 real passages (BANKING77 train utterances + Bitext responses),
then times ``Retriever.retrieve(q, k=5, mode="hybrid")`` one query at a time with
query embedding included (no query cache), and the same with a numpy brute-force
dense index instead of FAISS.

Part B builds an IVF-Flat index over 1M synthetic 384-d unit vectors (a mixture of
2,000 Gaussian clusters: uniform random vectors have no neighbourhood structure for
any ANN index to exploit), sweeps ``nprobe``, and reports per-query p50/p95 latency and
recall@10 against exact search, next to numpy brute force and the process memory.

Run:  .venv/bin/python benchmarks/retrieval_speed.py [--n 1000000] [--passages 10000]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kgnlp.files import default_home  # noqa: E402
from retrieval.corpus import Corpus, as_embedder, read_banking77, read_bitext  # noqa: E402
from retrieval.embedder import SentenceEmbedder, normalize_rows  # noqa: E402
from retrieval.retriever import Retriever  # noqa: E402
from retrieval.vector_index import ExactIndex, FaissIndex  # noqa: E402


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def part_a(shared: Path, home: Path, n_passages: int, n_queries: int) -> dict[str, float]:
    from models.provision import ModelCache

    path = ModelCache(home).resolve("all-minilm-l6-v2")
    emb = as_embedder(path, home)
    docs = read_banking77(shared / "banking77" / "train.csv")
    bitext = shared / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    docs += read_bitext(bitext)
    docs = docs[:n_passages]
    t0 = time.perf_counter()
    corpus = Corpus.build("speed", docs, emb)
    print(
        f"A: indexed {len(corpus.passages)} passages in {time.perf_counter() - t0:.1f} s (index {corpus.dense.kind})",
        file=sys.stderr,
    )
    with bitext.open(encoding="utf-8", newline="") as fh:
        qs = [r["instruction"] for r in csv.DictReader(fh)]
    queries = random.Random(1).sample(sorted(set(qs)), n_queries)
    # queries are embedded from scratch every time: no disk cache, no memory LRU
    qemb = SentenceEmbedder(emb.model, name=emb.name, cache=None, memory_items=0)  # type: ignore[attr-defined]
    faiss_r = corpus.retriever(qemb)
    exact = ExactIndex(corpus.dense.dim)
    exact.add(*corpus.vectors)
    numpy_r = Retriever(corpus.passages, qemb, exact, corpus.lexical, name="numpy")
    for q in queries[:10]:  # warm-up (BM25 matrix, torch kernels)
        faiss_r.retrieve(q, 5, "hybrid")
        numpy_r.retrieve(q, 5, "hybrid")
    out: dict[str, float] = {}
    for label, fn in (
        ("embed", lambda q: qemb.embed([q])),
        ("hybrid_faiss", lambda q: faiss_r.retrieve(q, 5, "hybrid")),
        ("hybrid_numpy", lambda q: numpy_r.retrieve(q, 5, "hybrid")),
        ("lexical", lambda q: faiss_r.retrieve(q, 5, "lexical")),
    ):
        ts = []
        for q in queries:
            t = time.perf_counter()
            fn(q)
            ts.append(time.perf_counter() - t)
        out[f"{label}_p50"], out[f"{label}_p95"] = pct(ts)
    out["passages"] = len(corpus.passages)
    out["rss_mb"] = rss_mb()
    return out


def synthetic(n: int, dim: int, clusters: int, seed: int, chunk: int = 131_072) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = normalize_rows(rng.standard_normal((clusters, dim), dtype=np.float32))
    x = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * (1.0 / np.sqrt(dim))
        x[i : i + m] = normalize_rows(centers[rng.integers(0, clusters, m)] + noise)
    return x


def part_b(n: int, dim: int, n_queries: int, nlist: int) -> tuple[list[dict[str, float]], dict[str, float]]:
    t0 = time.perf_counter()
    x = synthetic(n, dim, 2000, seed=0)
    # queries: perturbed copies of random corpus vectors (same clusters as the data)
    rng = np.random.default_rng(7)
    q = normalize_rows(
        x[rng.choice(n, n_queries, replace=False)]
        + rng.standard_normal((n_queries, dim), dtype=np.float32) * (0.5 / np.sqrt(dim))
    )
    print(f"B: generated {n}x{dim} in {time.perf_counter() - t0:.1f} s, rss {rss_mb():.0f} MB", file=sys.stderr)
    # exact ground truth (blocked matmul) and numpy brute-force latency
    t0 = time.perf_counter()
    truth = np.empty((n_queries, 10), dtype=np.int64)
    for i in range(0, n_queries, 50):
        s = q[i : i + 50] @ x.T
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        truth[i : i + 50] = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), 1), 1)
    print(f"B: exact top-10 for {n_queries} queries in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    ts = []
    for i in range(min(30, n_queries)):
        t = time.perf_counter()
        s = x @ q[i]
        np.argpartition(-s, 10)[:10]
        ts.append(time.perf_counter() - t)
    numpy_p50, numpy_p95 = pct(ts)
    t0 = time.perf_counter()
    idx = FaissIndex(dim, kind="ivf", nlist=nlist, nprobe=16, use_gpu="auto")
    step = 64 * nlist  # the first add trains the quantizer on these vectors
    for i in range(0, n, step):
        idx.add(np.arange(i, min(n, i + step)), x[i : i + step])
    build_s = time.perf_counter() - t0
    print(f"B: IVF{idx.nlist},Flat built in {build_s:.1f} s, rss {rss_mb():.0f} MB", file=sys.stderr)
    import faiss

    # one query at a time: a single thread avoids OpenMP spin-waits on a shared 2-core machine
    faiss.omp_set_num_threads(1)
    rows = []
    for nprobe in (4, 8, 16, 32, 64):
        idx.set_nprobe(nprobe)
        idx.search(q[:5], 10)
        ts, rec = [], []
        for i in range(n_queries):
            t = time.perf_counter()
            _, k = idx.search(q[i : i + 1], 10)
            ts.append(time.perf_counter() - t)
            rec.append(len(set(k[0].tolist()) & set(truth[i].tolist())) / 10)
        p50, p95 = pct(ts)
        rows.append({"nprobe": nprobe, "p50": p50, "p95": p95, "recall": float(np.mean(rec))})
    info = {
        "numpy_p50": numpy_p50,
        "numpy_p95": numpy_p95,
        "build_s": build_s,
        "nlist": idx.nlist,
        "rss_mb": rss_mb(),
        "vectors_mb": x.nbytes / 2**20,
    }
    return rows, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--home", type=Path, default=default_home())
    ap.add_argument("--passages", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=2048)
    ap.add_argument("--skip-a", action="store_true")
    a = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it
    summary = []
    if not a.skip_a:
        if not (a.shared / "banking77" / "train.csv").exists():
            print(f"skipped part A: {a.shared} has no banking77/bitext data")
        else:
            r = part_a(a.shared, a.home, a.passages, a.queries)
            print(
                f"\nA. hybrid retrieval (dense+BM25, RRF, k=5, query embedding included), "
                f"{int(r['passages'])} passages, {a.queries} queries, 1 at a time"
            )
            print("| step | p50 ms | p95 ms |\n|---|---|---|")
            for label, name in (
                ("embed", "query embedding only (MiniLM-L6)"),
                ("hybrid_faiss", "hybrid, FAISS flat"),
                ("hybrid_numpy", "hybrid, numpy brute force"),
                ("lexical", "BM25 only"),
            ):
                print(f"| {name} | {r[label + '_p50']:.2f} | {r[label + '_p95']:.2f} |")
            print(f"process RSS {r['rss_mb']:.0f} MB")
            summary.append(
                f"hybrid10k_p50_ms={r['hybrid_faiss_p50']:.2f} hybrid10k_p95_ms={r['hybrid_faiss_p95']:.2f} "
                f"hybrid10k_numpy_p50_ms={r['hybrid_numpy_p50']:.2f}"
            )
    rows, info = part_b(a.n, 384, a.queries, a.nlist)
    print(
        f"\nB. FAISS IVF{info['nlist']},Flat over {a.n:,} synthetic 384-d vectors "
        f"(build {info['build_s']:.0f} s), {a.queries} queries, 1 at a time, k=10"
    )
    print("| search | p50 ms | p95 ms | recall@10 vs exact |\n|---|---|---|---|")
    for row in rows:
        print(f"| IVF nprobe={row['nprobe']} | {row['p50']:.2f} | {row['p95']:.2f} | {row['recall']:.3f} |")
    print(f"| numpy brute force | {info['numpy_p50']:.2f} | {info['numpy_p95']:.2f} | 1.000 |")
    print(f"memory: vectors {info['vectors_mb']:.0f} MB, process RSS {info['rss_mb']:.0f} MB")
    ok = [r for r in rows if r["recall"] >= 0.9]
    best = min(ok, key=lambda r: r["p50"]) if ok else max(rows, key=lambda r: r["recall"])
    summary.append(
        f"ivf1m_nprobe={best['nprobe']} ivf1m_p50_ms={best['p50']:.2f} ivf1m_p95_ms={best['p95']:.2f} "
        f"ivf1m_recall@10={best['recall']:.3f} numpy1m_p50_ms={info['numpy_p50']:.1f} "
        f"rss_mb={info['rss_mb']:.0f}"
    )
    print(
        "\ncommand: .venv/bin/python benchmarks/retrieval_speed.py"
        + (f" --n {a.n}" if a.n != 1_000_000 else "")
        + (" --skip-a" if a.skip_a else "")
    )
    print(" ".join(summary))


if __name__ == "__main__":
    main()

"""``POST /sentiment`` throughput over real HTTP, end to end: the service as ``make serve`` runs it
(registered classifier, topic head, company linking on the finance graph), requests of 64 texts.

Starts ``uvicorn apps.main:app_factory`` on ``KGNLP_HOME`` (``make serve`` builds it) with a fresh
state database and no generator (``/sentiment`` does not use it), waits for ``/health/ready``,
warms up, then sends the shipped tweets in a seeded random order (requests are not length-sorted:
each one pads its own texts) from ``--concurrency`` clients.

    .venv/bin/python benchmarks/sentiment_http.py [--texts 2048] [--batch 64] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def start(state: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KGNLP_DATABASE_URL": f"sqlite:///{state / 'state.sqlite'}",
        "KGNLP_AUTH__KEYS_PATH": str(state / "keys.sqlite"),
        "KGNLP_MODELS__LOAD_GENERATOR": "false",
        "KGNLP_OBSERVABILITY__LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": str(threads),
    }
    cmd = [sys.executable, "-m", "uvicorn", "apps.main:app_factory", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = (state / "server.log").open("wb")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), f"http://127.0.0.1:{port}"


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}) before it was ready")
        try:
            r = httpx.get(f"{url}/health/ready", timeout=5)
            if r.status_code == 200:
                return dict(r.json())
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} was not ready after {timeout:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=2048, help="texts sent (after a warm-up of 256)")
    ap.add_argument("--batch", type=int, default=64, help="texts per request")
    ap.add_argument("--concurrency", type=int, default=1, help="clients sending at once")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--url", help="measure this running service instead of starting one")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from apps.sentiment.classifier_data import load_twitter, shipped_twitter_csv
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)
    texts = [t for t, _ in load_twitter(shipped_twitter_csv())]
    random.Random(args.seed).shuffle(texts)
    warm, texts = texts[:256], texts[256 : 256 + args.texts]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    with tempfile.TemporaryDirectory(prefix="kgnlp-sent-http-") as tmp:
        proc = None
        url = args.url
        if url is None:
            proc, url = start(Path(tmp), args.threads)
            t0 = time.monotonic()
            ready = wait_ready(url, proc)
            sent = ready["components"]["sentiment"]
            print(f"service ready in {time.monotonic() - t0:.1f} s: model {sent['classifier']['version']}, "
                  f"topics {sent.get('topic_tagger')}, companies {sent['companies']}")  # fmt: skip
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                for i in range(0, len(warm), args.batch):
                    client.post("/sentiment", json={"texts": warm[i : i + args.batch]}).raise_for_status()
                latencies: list[float] = []
                errors: list[str] = []
                topics = companies = 0
                lock = threading.Lock()
                queue = list(reversed(batches))

                def worker() -> None:
                    nonlocal topics, companies
                    with httpx.Client(base_url=url, timeout=120) as c:
                        while True:
                            with lock:
                                if not queue:
                                    return
                                batch = queue.pop()
                            s = time.perf_counter()
                            r = c.post("/sentiment", json={"texts": batch})
                            took = time.perf_counter() - s
                            with lock:
                                latencies.append(took)
                                if r.status_code != 200:
                                    errors.append(f"{r.status_code} {r.text[:200]}")
                                else:
                                    res = r.json()["results"]
                                    topics += sum(1 for x in res if x["topics"])
                                    companies += sum(1 for x in res if x["entities"])

                t0 = time.perf_counter()
                workers = [threading.Thread(target=worker) for _ in range(args.concurrency)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                wall = time.perf_counter() - t0
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    if errors:
        print(f"{len(errors)} failed requests, first: {errors[0]}")
    latencies.sort()
    n = len(texts)
    rate = n / wall
    p50 = latencies[len(latencies) // 2] * 1000
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000
    print(f"{n} texts in {len(batches)} requests of {args.batch}, {args.concurrency} client(s): {wall:.1f} s; "
          f"{topics} texts with topics, {companies} with companies")  # fmt: skip
    print(f"command: .venv/bin/python benchmarks/sentiment_http.py --texts {args.texts} --batch {args.batch} "
          f"--concurrency {args.concurrency} --threads {args.threads}")  # fmt: skip
    print(f"texts_per_s_http={rate:.1f} request_p50_ms={p50:.0f} request_p95_ms={p95:.0f} errors={len(errors)} n={n}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load test: concurrent clients over a mix of routes against the real service, over HTTP.

Starts ``kgnlp``'s app (``uvicorn apps.main:app_factory --factory``) in a subprocess with its
real models, graphs and indexes from ``KGNLP_HOME`` (``make serve`` builds them) and a fresh
state database, or drives ``--url`` instead. ``--concurrency`` async clients (httpx) send, for
``--duration`` seconds, a weighted mix of ``/retrieve``, ``/cs/answer``, ``/sentiment`` (batches of
8), ``/kg/link``, ``/recommend`` (k=20, demo catalogue users) and ``/v1/chat/completions``
(``max_tokens`` 8). The server's resident memory (its ``/metrics``) is read after ``--warmup`` seconds of the
same load (not counted) and after the run. A client that gets 429 or 503
waits the ``Retry-After`` it was given before its next request.

Reports per route p50/p95/p99 latency, statuses, error rate, 429/503 counts and throughput, and
checks that nothing answered a 5xx other than 503, that every 429/503 carried ``Retry-After``,
and that the service is healthy afterwards (exit status 1 otherwise). Ends with one
``NAME=value`` summary line.

Run:  .venv/bin/python benchmarks/load.py [--duration 60] [--concurrency 16] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUERIES = [
    "how do I get a refund", "where is my order", "I want to cancel my order", "change my shipping address",
    "my payment failed", "how can I contact customer service", "I need an invoice", "delete my account",
]  # fmt: skip
FINANCE = [
    "$AAPL shares slump as iPhone sales fall", "Microsoft beats earnings estimates on cloud growth",
    "Exxon Mobil faces a lawsuit over emissions", "JPMorgan raises its dividend", "Nvidia stock hits a record",
    "Amazon cuts its outlook for the holiday quarter", "Tesla recalls vehicles over a software fault",
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn",
]  # fmt: skip


# each client's customer-service session: its first /cs/answer starts one, the server names it
SESSIONS: dict[int, dict[str, str]] = {}


@dataclass
class Route:
    name: str
    path: str
    weight: float
    body: Any  # a callable (rng, client id) -> JSON body


ROUTES = [
    Route("retrieve", "/retrieve", 3, lambda r, c: {"query": r.choice(QUERIES), "k": 5, "mode": "hybrid"}),
    Route("cs_answer", "/cs/answer", 2, lambda r, c: {**SESSIONS.get(c, {}), "message": r.choice(QUERIES)}),
    Route("sentiment", "/sentiment", 2, lambda r, c: {"texts": r.sample(FINANCE, 8)}),
    Route("kg_link", "/kg/link?graph=finance", 2, lambda r, c: {"text": r.choice(FINANCE)}),
    Route("recommend", "/recommend", 2, lambda r, c: {"user_id": f"user:{r.randrange(300)}", "k": 20}),
    Route("chat", "/v1/chat/completions", 1, lambda r, c: {
        "model": "smollm2-135m-instruct", "max_tokens": 8,
        "messages": [{"role": "user", "content": r.choice(QUERIES)}]}),
]  # fmt: skip


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    missing_retry_after: int = 0
    retry_wait_s: float = 0.0
    transport_errors: Counter[str] = field(default_factory=Counter)


async def client(cid: int, url: str, until: float, stats: Stats, seed: int, routes: list[Route]) -> None:
    rng = random.Random(seed * 1000 + cid)
    weights = [r.weight for r in routes]
    async with httpx.AsyncClient(base_url=url, timeout=180) as http:
        while time.monotonic() < until:
            route = rng.choices(routes, weights)[0]
            t0 = time.perf_counter()
            try:
                resp = await http.post(route.path, json=route.body(rng, cid))
            except httpx.HTTPError as e:
                stats.transport_errors[f"{route.name}:{type(e).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            stats.latencies[route.name].append(time.perf_counter() - t0)
            stats.statuses[route.name][resp.status_code] += 1
            if route.name == "cs_answer" and resp.status_code == 200:
                SESSIONS[cid] = {"session_id": resp.json()["session_id"]}
            if resp.status_code in (429, 503):
                retry = resp.headers.get("retry-after")
                if retry is None or not retry.isdigit():
                    stats.missing_retry_after += 1
                    wait = 1.0
                else:
                    wait = float(retry)
                wait = min(wait, max(0.0, until - time.monotonic()))  # honour it, within the run
                stats.retry_wait_s += wait
                await asyncio.sleep(wait)


def server_rss(url: str) -> float:
    """The server process's resident memory in bytes, from its Prometheus ``/metrics``."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    return float("nan")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_graphs(folder: Path) -> None:
    """Private copies of the demo graphs (an embedded graph allows one read-write process)."""
    from kg.demo import build_demo
    from kg.registry import GraphRegistry

    with GraphRegistry(folder) as registry:
        for name in ("retail", "finance"):
            build_demo(name, registry.get(name, create=True))


def start_server(args: argparse.Namespace, state: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    t0 = time.monotonic()
    build_graphs(state / "graphs")
    print(f"demo graphs built in {time.monotonic() - t0:.1f} s")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KGNLP_DATABASE_URL": f"sqlite:///{state / 'state.sqlite'}",
        "KGNLP_GRAPH__PATH": str(state / "graphs"),
        "KGNLP_AUTH__KEYS_PATH": str(state / "keys.sqlite"),
        "KGNLP_MODELS__MAX_CONCURRENT": str(args.max_concurrent),
        "KGNLP_MODELS__MAX_WAITING": str(args.max_waiting),
        "KGNLP_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    if args.anonymous_rate:
        env["KGNLP_LIMITS__ANONYMOUS_RATE"] = args.anonymous_rate
    cmd = [sys.executable, "-m", "uvicorn", "apps.main:app_factory", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = (state / "server.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60, help="seconds of load")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    ap.add_argument("--warmup", type=float, default=15, help="seconds of the same load before measuring")
    ap.add_argument("--url", help="drive this running service instead of starting one")
    ap.add_argument("--max-concurrent", type=int, default=1, help="server: generations at once")
    ap.add_argument("--max-waiting", type=int, default=4, help="server: generations waiting (more get 503)")
    ap.add_argument("--anonymous-rate", default=None, help="server: per-address limit, e.g. 20/second (429s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--routes", default=",".join(r.name for r in ROUTES), help="comma-separated subset of the mix")
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it

    routes = [r for r in ROUTES if r.name in args.routes.split(",")]
    if not routes:
        ap.error(f"--routes: none of {args.routes!r} is one of {[r.name for r in ROUTES]}")
    proc = None
    with tempfile.TemporaryDirectory(prefix="kgnlp-load-") as tmp:
        state = Path(tmp)
        url = args.url
        t_start = time.monotonic()
        if url is None:
            proc, url = start_server(args, state)
        try:
            ready = wait_ready(url, proc, timeout=600)
            print(f"service ready in {time.monotonic() - t_start:.1f} s at {url}: "
                  + ", ".join(f"{k}={v.get('status')}" for k, v in ready.get("components", {}).items()))  # fmt: skip
            warm = Stats()

            async def warm_up() -> None:  # every client for a while first: thread pools and caches fill up
                until = time.monotonic() + args.warmup
                await asyncio.gather(
                    *(client(c, url, until, warm, args.seed + 1, routes) for c in range(args.concurrency))
                )

            asyncio.run(warm_up())
            rss_before = server_rss(url)
            stats = Stats()
            t0 = time.monotonic()

            async def run() -> None:
                until = time.monotonic() + args.duration
                clients = (client(c, url, until, stats, args.seed, routes) for c in range(args.concurrency))
                await asyncio.gather(*clients)

            asyncio.run(run())
            elapsed = time.monotonic() - t0
            rss_after = server_rss(url)
            after = httpx.get(f"{url}/health/ready", timeout=30)
            live = httpx.get(f"{url}/health/live", timeout=30)
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                if proc.returncode not in (0, -15):
                    print((state / "server.log").read_text()[-3000:])

    total = sum(sum(c.values()) for c in stats.statuses.values())
    all_status: Counter[int] = sum(stats.statuses.values(), Counter())
    bad_5xx = sum(n for s, n in all_status.items() if s >= 500 and s != 503)
    other_errors = sum(n for s, n in all_status.items() if s >= 400 and s not in (429, 503))
    ok = sum(n for s, n in all_status.items() if s < 400)
    print(f"\n{args.concurrency} clients, {elapsed:.1f} s, {total} responses, {ok / elapsed:.1f} successful req/s")
    head = ["n", "ok", "429", "503", "other", "p50 ms", "p95 ms", "p99 ms"]
    print(f"{'route':10} " + " ".join(f"{h:>{9 if 'ms' in h else 6}}" for h in head))
    for r in ROUTES:
        st, lat = stats.statuses[r.name], stats.latencies[r.name]
        n_ok = sum(v for s, v in st.items() if s < 400)
        other = sum(v for s, v in st.items() if s >= 400 and s not in (429, 503))
        print(f"{r.name:10} {len(lat):6d} {n_ok:6d} {st[429]:5d} {st[503]:5d} {other:5d} "
              f"{pct(lat, .5):9.1f} {pct(lat, .95):9.1f} {pct(lat, .99):9.1f}")  # fmt: skip
    print(f"statuses: {dict(sorted(all_status.items()))}; transport errors: {dict(stats.transport_errors)}")
    print(f"Retry-After honoured: {stats.retry_wait_s:.1f} s waited in total; missing on {stats.missing_retry_after}")
    healthy = after.status_code == 200 and live.status_code == 200
    rss_growth = (rss_after - rss_before) / rss_before * 100 if rss_before and rss_after else float("nan")
    print(f"server RSS: {rss_before / 2**20:.0f} MiB after warm-up, {rss_after / 2**20:.0f} MiB after the run "
          f"({rss_growth:+.1f} %)")  # fmt: skip
    print(f"after the run: /health/ready {after.status_code}, /health/live {live.status_code}")
    checks = {
        "no_5xx_but_503": bad_5xx == 0,
        "retry_after_on_429_503": stats.missing_retry_after == 0,
        "no_transport_errors": not stats.transport_errors,
        "healthy_after": healthy,
        "some_success": ok > 0,
        "rss_growth_below_10pct": rss_growth < 10,
    }
    failed = [k for k, v in checks.items() if not v]
    print(f"checks: {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
    cmd = " ".join(["benchmarks/load.py", *sys.argv[1:]])
    print(f"rerun: .venv/bin/python {cmd}")
    lat_all = [x for v in stats.latencies.values() for x in v]
    print(
        f"load_ok_rps={ok / elapsed:.1f} responses={total} error_rate={other_errors / max(total, 1):.4f} "
        f"n429={all_status[429]} n503={all_status[503]} n5xx_other={bad_5xx} p50_ms={pct(lat_all, 0.5):.1f} "
        f"p95_ms={pct(lat_all, 0.95):.1f} p99_ms={pct(lat_all, 0.99):.1f} rss_growth_pct={rss_growth:.1f} "
        f"healthy_after={'yes' if healthy else 'no'} "
        f"checks={'pass' if not failed else 'fail'}"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

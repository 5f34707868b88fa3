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

``--replicas N`` (N > 1) starts N servers on different loopback ports sharing one ``KGNLP_HOME``,
one state database (``--database-url``, e.g. ``postgresql+psycopg://…``; default a fresh SQLite
file in a temporary folder) and one copy of the demo graphs, opened read-only by every replica
(``KGNLP_GRAPH__READ_ONLY``: the load mix only reads graphs); ``--redis-url`` shares the rate-limit
storage (``KGNLP_LIMITS__STORAGE_URI``). Each request goes to the next server, round-robin over all
clients. The mix gains ``/sentiment/events`` (batches of 4 headlines, 3 in 4 negative, about 8 companies,
dated in 3 hour-buckets 10 h apart, ids unique to the run), and the servers get one alert rule
(``KGNLP_SENTIMENT__RULES``: negative share above 0.5 over at least 3 texts in an hour) and one
signed webhook (``KGNLP_SENTIMENT__WEBHOOK_URLS``) to a receiver in this process. After the load
it waits (``--drain`` seconds at most) until no delivery is pending and none arrived for 5 s, then
counts duplicate deliveries (one ``event`` of one alert received more than once) and alerts of the
run's rule (``/alerts``) whose ``alert.fired`` never arrived. Exit status 1 also on a duplicate, an
undelivered alert or a bad signature. The summary line then starts ``replicas=N rps=…``.
``--url`` may name several running services, comma-separated (round-robin, no webhook check).

Run:  .venv/bin/python benchmarks/load.py [--duration 60] [--concurrency 16] [--url http://127.0.0.1:8000]
      .venv/bin/python benchmarks/load.py --replicas 2 --duration 30 [--database-url URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


# --replicas: events that fire alerts (hence webhooks); ids unique to the run, so a shared database
# (PostgreSQL) from an earlier run neither skips them as duplicates nor mixes its alerts in
RUN = uuid.uuid4().hex[:8]
ALERT_RULE = f"load-negative-share-{RUN}"
COMPANIES = ["AAPL", "MSFT", "XOM", "JPM", "NVDA", "AMZN", "TSLA", "META"]
NEGATIVE = [
    "${t} shares plunge after a profit warning", "${t} faces a lawsuit over fraud allegations",
    "${t} cuts its outlook as sales collapse", "${t} stock slumps on a regulatory probe",
    "${t} misses earnings estimates and shares tumble", "${t} recalls products over a safety fault",
]  # fmt: skip
OTHER = ["${t} raises its dividend", "${t} beats earnings estimates", "${t} holds its annual meeting"]
EVENT_IDS = itertools.count()
BUCKET_S = 3600
NOW_BUCKET = int(time.time()) // BUCKET_S * BUCKET_S


def events_body(r: random.Random, c: int) -> dict[str, Any]:
    events = []
    for _ in range(4):
        ticker = r.choice(COMPANIES)
        ts = NOW_BUCKET - r.choice((20, 10, 0)) * BUCKET_S + r.randrange(BUCKET_S // 2)
        text = r.choice(NEGATIVE if r.random() < 0.75 else OTHER).replace("{t}", ticker)
        events.append({"id": f"load-{RUN}-{next(EVENT_IDS)}", "text": text, "timestamp": ts, "entity": ticker})
    return {"events": events}


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    missing_retry_after: int = 0
    retry_wait_s: float = 0.0
    transport_errors: Counter[str] = field(default_factory=Counter)
    per_server: Counter[str] = field(default_factory=Counter)  # responses per server URL


EVENTS = Route("events", "/sentiment/events", 1, events_body)


async def client(
    cid: int, urls: list[str], until: float, stats: Stats, seed: int, routes: list[Route], rr: itertools.count[int]
) -> None:
    """One client: requests in a loop, each to the next server of ``urls`` (``rr`` is shared: round-robin)."""
    rng = random.Random(seed * 1000 + cid)
    weights = [r.weight for r in routes]
    async with httpx.AsyncClient(timeout=180) as http:
        while time.monotonic() < until:
            route = rng.choices(routes, weights)[0]
            url = urls[next(rr) % len(urls)]
            t0 = time.perf_counter()
            try:
                resp = await http.post(url + route.path, json=route.body(rng, cid))
            except httpx.HTTPError as e:
                stats.transport_errors[f"{route.name}:{type(e).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            stats.latencies[route.name].append(time.perf_counter() - t0)
            stats.statuses[route.name][resp.status_code] += 1
            stats.per_server[url] += 1
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


class WebhookReceiver:
    """Records every POST it gets (a thread of this process): ``(delivery id, event, alert id, signature ok)``."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[str, str, str, bool]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from apps.sentiment.webhooks import SIGNATURE_HEADER, verify

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                    event, alert_id = str(payload["event"]), str(payload["alert"]["id"])
                except (ValueError, KeyError, TypeError):
                    event, alert_id = "?", "?"
                signed = verify(receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body)
                with receiver.lock:
                    receiver.received.append((self.headers.get("X-Kgnlp-Delivery", "?"), event, alert_id, signed))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        self.thread.start()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_server(
    args: argparse.Namespace, state: Path, index: int = 0, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if index == 0:  # one copy of the graphs, shared by every replica
        t0 = time.monotonic()
        build_graphs(state / "graphs")
        print(f"demo graphs built in {time.monotonic() - t0:.1f} s")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KGNLP_DATABASE_URL": args.database_url or f"sqlite:///{state / 'state.sqlite'}",
        "KGNLP_GRAPH__PATH": str(state / "graphs"),
        "KGNLP_AUTH__KEYS_PATH": str(state / "keys.sqlite"),
        "KGNLP_MODELS__MAX_CONCURRENT": str(args.max_concurrent),
        "KGNLP_MODELS__MAX_WAITING": str(args.max_waiting),
        "KGNLP_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    if args.anonymous_rate:
        env["KGNLP_LIMITS__ANONYMOUS_RATE"] = args.anonymous_rate
    if args.redis_url:
        env["KGNLP_LIMITS__STORAGE_URI"] = args.redis_url
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "uvicorn", "apps.main:app_factory", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = (state / log_name(index)).open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return proc, f"http://127.0.0.1:{port}"


def log_name(index: int) -> str:
    return "server.log" if index == 0 else f"server-{index}.log"


def replica_env(receiver: WebhookReceiver) -> dict[str, str]:
    """What every replica shares besides home and database: read-only graphs, the rule, the webhook."""
    rule = {"kind": "share", "name": ALERT_RULE, "threshold": 0.5, "min_volume": 3, "span": 1}
    return {
        "KGNLP_GRAPH__READ_ONLY": "true",
        "KGNLP_SENTIMENT__RULES": json.dumps([rule]),
        "KGNLP_SENTIMENT__WEBHOOK_URLS": json.dumps([receiver.url]),
        "KGNLP_SENTIMENT__WEBHOOK_SECRET": receiver.secret,
        "KGNLP_SENTIMENT__WEBHOOK_BACKOFF_S": "1",
    }


def stop_servers(procs: list[subprocess.Popen[bytes]], state: Path) -> None:
    """Terminate every server (all first, then wait), kill what does not stop; show a failed one's log."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for i, proc in enumerate(procs):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -15):
            print(f"server {i} exited with {proc.returncode}:")
            print((state / log_name(i)).read_text(errors="replace")[-3000:])


def drain_webhooks(receiver: WebhookReceiver, url: str, limit_s: float, quiet_s: float = 5.0) -> tuple[int, float]:
    """Wait until no delivery to ``receiver`` is pending and none arrived for ``quiet_s`` (at most ``limit_s``).

    Returns the deliveries still pending at the end and the seconds waited.
    """
    t0 = time.monotonic()
    last, changed, pending = -1, t0, -1
    while time.monotonic() - t0 < limit_s:
        n = receiver.count()
        if n != last:
            last, changed = n, time.monotonic()
        try:
            rows = httpx.get(
                f"{url}/admin/sentiment/deliveries", params={"status": "pending", "limit": 1000}, timeout=30
            )
            pending = sum(1 for d in rows.json() if d.get("url") == receiver.url) if rows.status_code == 200 else -1
        except (httpx.HTTPError, ValueError):
            pending = -1
        if pending == 0 and time.monotonic() - changed >= quiet_s:
            break
        time.sleep(1)
    return pending, time.monotonic() - t0


def dead_deliveries(receiver: WebhookReceiver, url: str) -> int:
    rows = httpx.get(f"{url}/admin/sentiment/deliveries", params={"status": "dead", "limit": 1000}, timeout=30)
    return sum(1 for d in rows.json() if d.get("url") == receiver.url) if rows.status_code == 200 else -1


def run_alerts(url: str) -> list[dict[str, Any]]:
    """The alerts of this run's rule, from the API."""
    rows = httpx.get(f"{url}/alerts", params={"limit": 1000}, timeout=30)
    rows.raise_for_status()
    return [a for a in rows.json() if a["rule"] == ALERT_RULE]


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
    ap.add_argument("--url", help="drive this running service (comma-separated: these, round-robin) instead")
    ap.add_argument("--replicas", type=int, default=1, help="servers to start on one home and database")
    ap.add_argument("--database-url", default=None, help="state database of the servers (default: fresh SQLite)")
    ap.add_argument("--redis-url", default=None, help="rate-limit storage of the servers, e.g. redis://127.0.0.1:6379")
    ap.add_argument("--drain", type=float, default=90, help="--replicas: longest wait for webhook deliveries (s)")
    ap.add_argument("--max-concurrent", type=int, default=1, help="server: generations at once")
    ap.add_argument("--max-waiting", type=int, default=4, help="server: generations waiting (more get 503)")
    ap.add_argument("--anonymous-rate", default=None, help="server: per-address limit, e.g. 20/second (429s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--routes", default=",".join(r.name for r in ROUTES), help="comma-separated subset of the mix")
    args = ap.parse_args()
    if args.replicas < 1 or (args.url and args.replicas > 1):
        ap.error("--replicas: at least 1, and only for servers this script starts (not with --url)")
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it

    routes = [r for r in ROUTES if r.name in args.routes.split(",")]
    if not routes:
        ap.error(f"--routes: none of {args.routes!r} is one of {[r.name for r in ROUTES]}")
    replicated = args.replicas > 1  # N servers on one home and database, with the webhook check
    if replicated:
        routes.append(EVENTS)
    # SIGTERM ends the run like Ctrl-C does: through the finally below, which stops every server
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    procs: list[subprocess.Popen[bytes]] = []
    receiver: WebhookReceiver | None = None
    webhooks: dict[str, Any] = {}
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="kgnlp-load-") as tmp:
        state = Path(tmp)
        urls = args.url.split(",") if args.url else []
        t_start = time.monotonic()
        try:
            if not urls:
                if replicated:
                    receiver = WebhookReceiver(secret=uuid.uuid4().hex)
                    extra = replica_env(receiver)
                    for i in range(args.replicas):
                        proc, url = start_server(args, state, i, extra)
                        procs.append(proc)
                        urls.append(url)
                        if i == 0:  # the others once it made the schema: first starts on one fresh SQLite
                            wait_ready(url, proc, timeout=600)  # file race in CREATE TABLE, one fails to start
                else:
                    proc, url = start_server(args, state)
                    procs.append(proc)
                    urls.append(url)
            for i, url in enumerate(urls):
                ready = wait_ready(url, procs[i] if procs else None, timeout=600)
                parts = ", ".join(f"{k}={v.get('status')}" for k, v in ready.get("components", {}).items())
                print(f"service ready in {time.monotonic() - t_start:.1f} s at {url}: {parts}")
            warm = Stats()
            rr = itertools.count()

            async def warm_up() -> None:  # every client for a while first: thread pools and caches fill up
                until = time.monotonic() + args.warmup
                await asyncio.gather(
                    *(client(c, urls, until, warm, args.seed + 1, routes, rr) for c in range(args.concurrency))
                )

            asyncio.run(warm_up())
            rss_before = [server_rss(u) for u in urls]
            stats = Stats()
            t0 = time.monotonic()

            async def run() -> None:
                until = time.monotonic() + args.duration
                clients = (client(c, urls, until, stats, args.seed, routes, rr) for c in range(args.concurrency))
                await asyncio.gather(*clients)

            asyncio.run(run())
            elapsed = time.monotonic() - t0
            rss_after = [server_rss(u) for u in urls]
            after = [httpx.get(f"{u}/health/ready", timeout=30) for u in urls]
            live = [httpx.get(f"{u}/health/live", timeout=30) for u in urls]
            if receiver is not None:
                pending, waited = drain_webhooks(receiver, urls[0], args.drain)
                webhooks = {"pending": pending, "waited": waited, "dead": dead_deliveries(receiver, urls[0])}
                webhooks["alerts"] = run_alerts(urls[-1])
        finally:
            stop_servers(procs, state)
            if procs and any(s >= 500 and s != 503 for c in stats.statuses.values() for s in c):
                for i in range(len(procs)):  # what the server said about its 5xx, before the folder goes
                    print(f"server {i} log (tail):\n" + (state / log_name(i)).read_text(errors="replace")[-3000:])
            if receiver is not None:
                receiver.close()

    total = sum(sum(c.values()) for c in stats.statuses.values())
    all_status: Counter[int] = sum(stats.statuses.values(), Counter())
    bad_5xx = sum(n for s, n in all_status.items() if s >= 500 and s != 503)
    other_errors = sum(n for s, n in all_status.items() if s >= 400 and s not in (429, 503))
    ok = sum(n for s, n in all_status.items() if s < 400)
    print(f"\n{args.concurrency} clients, {elapsed:.1f} s, {total} responses, {ok / elapsed:.1f} successful req/s")
    head = ["n", "ok", "429", "503", "other", "p50 ms", "p95 ms", "p99 ms"]
    print(f"{'route':10} " + " ".join(f"{h:>{9 if 'ms' in h else 6}}" for h in head))
    for r in [*ROUTES, EVENTS] if replicated else ROUTES:
        st, lat = stats.statuses[r.name], stats.latencies[r.name]
        n_ok = sum(v for s, v in st.items() if s < 400)
        other = sum(v for s, v in st.items() if s >= 400 and s not in (429, 503))
        print(f"{r.name:10} {len(lat):6d} {n_ok:6d} {st[429]:5d} {st[503]:5d} {other:5d} "
              f"{pct(lat, .5):9.1f} {pct(lat, .95):9.1f} {pct(lat, .99):9.1f}")  # fmt: skip
    print(f"statuses: {dict(sorted(all_status.items()))}; transport errors: {dict(stats.transport_errors)}")
    if len(urls) > 1:
        print("responses per server: " + ", ".join(f"{u} {stats.per_server[u]}" for u in urls))
    print(f"Retry-After honoured: {stats.retry_wait_s:.1f} s waited in total; missing on {stats.missing_retry_after}")
    healthy = all(a.status_code == 200 for a in after) and all(v.status_code == 200 for v in live)
    growth = [(a - b) / b * 100 if b and a else float("nan") for b, a in zip(rss_before, rss_after, strict=True)]
    rss_growth = max(growth)  # the worst server (nan when one could not be read: the check fails)
    if any(g != g for g in growth):
        rss_growth = float("nan")
    for u, b, a, g in zip(urls, rss_before, rss_after, growth, strict=True):
        print(f"server RSS{f' ({u})' if len(urls) > 1 else ''}: {b / 2**20:.0f} MiB after warm-up, "
              f"{a / 2**20:.0f} MiB after the run ({g:+.1f} %)")  # fmt: skip
    health = (f"/health/ready {a.status_code}, /health/live {v.status_code}" for a, v in zip(after, live, strict=True))
    print("after the run: " + "; ".join(health))
    checks = {
        "no_5xx_but_503": bad_5xx == 0,
        "retry_after_on_429_503": stats.missing_retry_after == 0,
        "no_transport_errors": not stats.transport_errors,
        "healthy_after": healthy,
        "some_success": ok > 0,
        "rss_growth_below_10pct": rss_growth < 10,
    }
    hooks = ""
    if receiver is not None:
        got = list(receiver.received)
        per_event = Counter((event, alert) for _, event, alert, _ in got)
        per_delivery = Counter(d for d, *_ in got)
        duplicates = sum(n - 1 for n in per_event.values() if n > 1)
        fired = {alert for (event, alert), _ in per_event.items() if event == "alert.fired"}
        alerts = webhooks["alerts"]
        undelivered = [a["id"] for a in alerts if a["id"] not in fired]
        bad_sig = sum(1 for *_, signed in got if not signed)
        print(f"webhooks: {len(got)} received ({sum(1 for e, _ in per_event if e == 'alert.fired')} alert.fired, "
              f"{sum(1 for e, _ in per_event if e == 'alert.resolved')} alert.resolved) for {len(alerts)} alerts of "
              f"rule {ALERT_RULE}; drained in {webhooks['waited']:.1f} s, {webhooks['pending']} still pending, "
              f"{webhooks['dead']} dead; {duplicates} duplicates ({sum(n - 1 for n in per_delivery.values() if n > 1)} "
              f"of one delivery id); {bad_sig} badly signed; undelivered alerts: {undelivered[:5]}")  # fmt: skip
        checks.update(
            {
                "no_duplicate_webhooks": duplicates == 0,
                "every_alert_delivered": not undelivered,
                "webhooks_signed": bad_sig == 0,
                "some_alerts": bool(alerts),
            }
        )
        hooks = (
            f"webhooks={len(got)} duplicate_webhooks={duplicates} undelivered_alerts={len(undelivered)} "
            f"alerts={len(alerts)} pending_webhooks={webhooks['pending']} dead_webhooks={webhooks['dead']} "
        )
    failed = [k for k, v in checks.items() if not v]
    print(f"checks: {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
    cmd = " ".join(["benchmarks/load.py", *sys.argv[1:]])
    print(f"rerun: .venv/bin/python {cmd}")
    lat_all = [x for v in stats.latencies.values() for x in v]
    latency = f"p50_ms={pct(lat_all, 0.5):.1f} p95_ms={pct(lat_all, 0.95):.1f} p99_ms={pct(lat_all, 0.99):.1f}"
    if len(urls) > 1:  # errors_5xx: 5xx other than 503 (those are r503, with Retry-After)
        print(
            f"replicas={len(urls)} rps={total / elapsed:.1f} ok_rps={ok / elapsed:.1f} requests={total} "
            f"errors_5xx={bad_5xx} errors_other_4xx={other_errors - bad_5xx} r429={all_status[429]} "
            f"r503={all_status[503]} missing_retry_after={stats.missing_retry_after} "
            f"transport_errors={sum(stats.transport_errors.values())} {hooks}{latency} "
            f"rss_growth_pct={rss_growth:.1f} healthy_after={'yes' if healthy else 'no'} "
            f"checks={'pass' if not failed else 'fail'}"
        )
        return 0 if not failed else 1
    print(
        f"load_ok_rps={ok / elapsed:.1f} responses={total} error_rate={other_errors / max(total, 1):.4f} "
        f"n429={all_status[429]} n503={all_status[503]} n5xx_other={bad_5xx} {latency} "
        f"rss_growth_pct={rss_growth:.1f} "
        f"healthy_after={'yes' if healthy else 'no'} "
        f"checks={'pass' if not failed else 'fail'}"
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

"""Alert quality: replay the twitter financial news on synthetic timestamps with injected negative bursts.

The tweets (train + valid of ../shared/data/twitter_financial_news_sentiment, or the copy
shipped in data/finance/sentiment) get random timestamps spread over ``--days`` days. For
``--bursts`` companies of the finance graph, ``--burst-size`` real bearish tweets (their
cashtags rewritten to the target's ticker) are injected within ``--burst-minutes`` at a
random time. Everything goes through the real service path (classifier, topics, KG linking,
SQLite store, rules with the service defaults), in time order, ``--batch`` events per ingest.

An alert is a true positive when it is for a burst's company and fires between the burst's
start and ``--max-delay-h`` hours after its end. Detection delay: from the burst's first text
to the newest event time of the ingest batch that reported the alert. A second replay without
injections must raise no alert at all.

    .venv/bin/python benchmarks/alerting.py [--labels model|gold] [--tweets 6000] [--days 2] [--bursts 12] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASHTAG = re.compile(r"\$[A-Za-z][A-Za-z0-9.]{0,6}")
LABELS = {"0": "negative", "1": "positive", "2": "neutral"}  # Bearish, Bullish, Neutral


def load_tweets() -> list[tuple[str, str]]:
    shared = ROOT.parent / "shared" / "data" / "twitter_financial_news_sentiment"
    files = [shared / "sent_train.csv", shared / "sent_valid.csv"]
    if not files[0].exists():
        files = sorted((ROOT / "data" / "finance" / "sentiment").glob("*.csv"))
    rows = []
    for f in files:
        if f.exists():
            with f.open(encoding="utf-8", newline="") as fh:
                rows += [(r["text"], LABELS[r["label"]]) for r in csv.DictReader(fh)]
    if not rows:
        sys.exit("no twitter data found (../shared/data or data/finance/sentiment)")
    return rows


class GoldClassifier:
    """The dataset's own labels (isolates the alert logic from classifier errors); the sentence
    vectors the topic head reads still come from the registered model (``vectors_from``)."""

    name = "gold-labels"

    def __init__(self, labels: dict[str, str], vectors_from: Any) -> None:
        self.labels, self.vectors_from = labels, vectors_from

    def predict(self, texts: list[str]) -> list[Any]:
        from apps.sentiment.classifier import SentimentPrediction

        out = []
        for t in texts:
            lab = self.labels[t]
            out.append(SentimentPrediction(lab, {k: float(k == lab) for k in ("negative", "neutral", "positive")}))
        return out

    def predict_with_vectors(self, texts: list[str]) -> tuple[list[Any], Any]:
        """Gold labels where the replay has them (the topic head's own fit texts have none)."""
        preds, vectors = self.vectors_from.predict_with_vectors(texts)
        labelled = [t for t in texts if t in self.labels]
        gold = dict(zip(labelled, self.predict(labelled), strict=True))
        return [gold.get(t, p) for t, p in zip(texts, preds, strict=True)], vectors

    def info(self) -> dict[str, Any]:
        return {"kind": "gold"}


class MemoAnalyses:
    """Caches the service's analysis (label, topics, companies) per text, so the second replay (and
    every injected copy of a real tweet) does not pay for the models again; results are identical."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}

    def wrap(self, analyze: Any) -> Any:
        def cached(texts: Any) -> list[Any]:
            texts = list(texts)
            todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
            if todo:
                self.cache.update(zip(todo, analyze(todo), strict=True))
            return [self.cache[t] for t in texts]

        return cached


def build_events(tweets: list[tuple[str, str]], args: argparse.Namespace, directory: Any, inject: bool) -> tuple:
    from apps.sentiment.service import EventIn

    rng = random.Random(args.seed)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    span = args.days * 86_400
    events = [EventIn(f"tw-{i}", text, t0 + timedelta(seconds=rng.uniform(0, span)), "twitter")
              for i, (text, _) in enumerate(tweets)]  # fmt: skip
    labels = {text: lab for text, lab in tweets}
    bursts = []
    if inject:
        bearish = [t for t, lab in tweets if lab == "negative" and len(CASHTAG.findall(t)) == 1]
        tickers = sorted(c.ticker for c in directory.companies.values() if c.ticker)
        for b, ticker in enumerate(rng.sample(tickers, args.bursts)):
            start = t0 + timedelta(seconds=rng.uniform(span * 0.35, span * 0.95))  # after a day of baseline
            for j in range(args.burst_size):
                text = CASHTAG.sub(f"${ticker}", rng.choice(bearish))
                text = f"{text} #{b}{j}"  # distinct texts: the gold classifier keys on text
                labels[text] = "negative"
                ts = start + timedelta(seconds=rng.uniform(0, args.burst_minutes * 60))
                events.append(EventIn(f"burst-{b}-{j}", text, ts, "injected"))
            bursts.append({"company": f"company:{ticker}", "start": start,
                           "end": start + timedelta(minutes=args.burst_minutes)})  # fmt: skip
    events.sort(key=lambda e: e.timestamp)
    return events, labels, bursts


def replay(svc: Any, events: list[Any], batch: int) -> list[dict[str, Any]]:
    fired = []
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        summary = svc.ingest(chunk)
        for a in summary.alerts:
            if a["change"] == "alert.fired":
                fired.append({**a, "reported_at": max(e.timestamp for e in chunk)})
    return fired


def score(fired: list[dict[str, Any]], bursts: list[dict[str, Any]], max_delay: timedelta) -> dict[str, Any]:
    matched: dict[int, timedelta] = {}
    tp = 0
    for a in fired:
        hit = None
        for k, b in enumerate(bursts):
            if a["key"] == b["company"] and b["start"] <= a["reported_at"] <= b["end"] + max_delay:
                hit = k
        if hit is not None:
            tp += 1
            delay = a["reported_at"] - bursts[hit]["start"]
            matched[hit] = min(delay, matched.get(hit, delay))
    delays = [d.total_seconds() / 60 for d in matched.values()]
    return {
        "alerts": len(fired),
        "precision": tp / len(fired) if fired else float("nan"),
        "recall": len(matched) / len(bursts) if bursts else float("nan"),
        "delay_p50_min": statistics.median(delays) if delays else float("nan"),
        "delay_max_min": max(delays) if delays else float("nan"),
        "false_alerts": [a["key"] for a in fired if all(a["key"] != b["company"] for b in bursts)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", choices=["model", "gold"], default="model")
    ap.add_argument("--tweets", type=int, default=6000, help="random sample of the tweets replayed (0: all)")
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--bursts", type=int, default=12)
    ap.add_argument("--burst-size", type=int, default=12)
    ap.add_argument("--burst-minutes", type=int, default=90)
    ap.add_argument("--max-delay-h", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", action="store_true", help="also replay alternative rule settings (same events)")
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it

    from apps.core.services import open_graph_registry
    from apps.core.settings import load_settings
    from apps.sentiment.classifier import load_latest
    from apps.sentiment.companies import CompanyDirectory
    from apps.sentiment.service import build_service
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache

    tweets = load_tweets()
    if args.tweets and args.tweets < len(tweets):
        tweets = random.Random(args.seed).sample(tweets, args.tweets)
    base = load_settings()
    embedder = load_sentence_embedder(ModelCache(base.home).resolve(base.models.embedder))
    graphs = open_graph_registry(base, embedder)
    directory = CompanyDirectory.from_store(graphs.get(base.sentiment.graph))
    model = load_latest(base.home)
    presets = rule_presets(base) if args.compare else {"service default": list(base.sentiment.rules)}
    memo = MemoAnalyses()
    rows = {}
    for preset, rules in presets.items():
        results = {}
        for inject in (False, True):
            events, labels, bursts = build_events(tweets, args, directory, inject)
            with tempfile.TemporaryDirectory() as tmp:
                settings = load_settings(database_url=f"sqlite:///{Path(tmp) / 'bench.sqlite'}",
                                         sentiment={"rules": [r.model_dump() for r in rules]})  # fmt: skip
                classifier = model if args.labels == "model" else GoldClassifier(labels, vectors_from=model)
                svc = build_service(settings, embedder, graphs, classifier)
                svc.analyze = memo.wrap(svc.analyze)  # type: ignore[method-assign]
                t = time.perf_counter()
                fired = replay(svc, events, args.batch)
                seconds = time.perf_counter() - t
                svc.close()
            r = score(fired, bursts, timedelta(hours=args.max_delay_h))
            r.update(events=len(events), seconds=seconds)
            results[inject] = r
        rows[preset] = results
        r, clean = results[True], results[False]
        print(f"{preset:<28} alerts={r['alerts']:>3} P={r['precision']:.3f} R={r['recall']:.3f} "
              f"delay p50={r['delay_p50_min']:.0f} min max={r['delay_max_min']:.0f} min | clean replay: "
              f"{clean['alerts']} alerts {clean['false_alerts'][:5]} | "
              f"{r['events'] / r['seconds']:.0f} events/s")  # fmt: skip
    graphs.close()
    r, clean = rows[next(iter(presets))][True], rows[next(iter(presets))][False]
    print(
        f"\nservice default rules: {[x.name for x in base.sentiment.rules]}, bucket {base.sentiment.bucket_s} s; "
        f"labels: {args.labels}; {args.bursts} bursts of {args.burst_size} bearish texts in {args.burst_minutes} min"
    )
    print(f"false alerts (with injections): {r['false_alerts']}")
    print(f"command: .venv/bin/python benchmarks/alerting.py --labels {args.labels} --tweets {args.tweets} "
          f"--days {args.days} --bursts {args.bursts} --burst-size {args.burst_size} --seed {args.seed}"
          f"{' --compare' if args.compare else ''}")  # fmt: skip
    print(f"precision={r['precision']:.3f} recall={r['recall']:.3f} delay_p50_min={r['delay_p50_min']:.0f} "
          f"clean_alerts={clean['alerts']} events_per_s={r['events'] / r['seconds']:.0f}")  # fmt: skip


def rule_presets(base: Any) -> dict[str, list[Any]]:
    """The service default first (the summary line reports it), then alternatives."""
    from apps.sentiment.rules import EwmaRule, ShareRule, ZScoreRule

    return {
        "service default": list(base.sentiment.rules),
        "z only, no prior": [ZScoreRule(name="z", z=3.0, min_volume=5, min_baseline=30)],
        "z, prior 20, span 2": [ZScoreRule(name="z", z=3.0, min_volume=5, min_baseline=10, prior_weight=20, span=2)],
        "z 4, prior 20, span 2": [ZScoreRule(name="z", z=4.0, min_volume=6, min_baseline=10, prior_weight=20, span=2)],
        "share 0.6/10 per bucket": [ShareRule(name="s", threshold=0.6, min_volume=10)],
        "z + share per bucket (first default)": [
            ZScoreRule(name="z", z=3.0, min_volume=5, min_baseline=30),
            ShareRule(name="s", threshold=0.6, min_volume=10),
        ],
        "share 0.6/8, span 3": [ShareRule(name="s", threshold=0.6, min_volume=8, span=3)],
        "ewma, prior 20": [EwmaRule(name="e", min_volume=3, min_baseline=10, prior_weight=20)],
    }


if __name__ == "__main__":
    main()

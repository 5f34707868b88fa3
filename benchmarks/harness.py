"""Run every benchmark in one profile and write one report beside the published anchors.

    .venv/bin/python benchmarks/harness.py --quick     # or: kgnlp bench --quick / make bench
    .venv/bin/python benchmarks/harness.py --full --only kge,recommend

Each benchmark runs as its own process (``.venv/bin/python benchmarks/NAME.py ARGS``) with a time
limit; its last ``NAME=value`` line is its result. A benchmark that needs ``../shared/data`` (or
``KGNLP_SHARED_DATA``) and does not find it is skipped with that reason; one that fails is reported
as failed with the tail of its output, and the harness exits 1. Writes ``artifacts/bench/REPORT.md``,
``report.json`` and one log per benchmark. Quick figures come from small but real runs (fewer
queries, shorter training): they check that the code runs and give an order of magnitude, and are
not the README's numbers, which come from the full profile or the commands beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Metric:
    key: str  # in the summary line
    label: str
    anchor: str = "–"  # the published figure (or the target), with its source
    source: str = ""


@dataclass(frozen=True)
class Bench:
    name: str
    task: str
    script: str
    quick: list[str] | None  # None: not in the quick profile (why: ``note``)
    full: list[str]
    needs: tuple[str, ...] = ()  # paths under the shared data folder
    metrics: tuple[Metric, ...] = ()
    timeout_quick_s: int = 300
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)


FINBERT = "Araci 2019, FinBERT on PhraseBank (all agreement levels)"
SUITE: tuple[Bench, ...] = (
    Bench("sentiment_http", "financial sentiment, POST /sentiment over HTTP (topics + companies)",
          "sentiment_http.py", ["--texts", "512"], ["--texts", "2048"],
          metrics=(Metric("texts_per_s_http", "texts/s end to end", "≥ 300", "issue #21 target"),
                   Metric("request_p50_ms", "request of 64, p50 ms"))),
    Bench("sentiment_speed", "sentiment classifier alone (batch 64, int8)", "sentiment.py", ["--only", "speed"],
          ["--only", "speed"], metrics=(Metric("texts_per_s", "texts/s"), Metric("latency_ms_b1", "batch-1 ms"))),
    Bench("topics", "finance topic tagging (2,315 hand-labelled tweets, test part)", "topics.py", [], [],
          metrics=(Metric("topics_micro_f1", "micro-F1 (test)", "≥ 0.80", "issue #21 target"),
                   Metric("topics_cv_f1", "micro-F1 (5-fold CV, fit parts)"))),
    Bench("alerting", "sentiment alerts on replayed tweets with injected bursts", "alerting.py",
          ["--tweets", "1500", "--bursts", "4"], [],
          metrics=(Metric("precision", "alert precision"), Metric("recall", "burst recall"),
                   Metric("delay_p50_min", "delay p50 (min)"))),
    Bench("load", "service under mixed load (one replica, SQLite)", "load.py", ["--duration", "10", "--warmup", "3"],
          [], metrics=(Metric("load_ok_rps", "ok requests/s"), Metric("error_rate", "error rate"),
                       Metric("checks", "checks"))),
    Bench("generation", "LLM decode on CPU (SmolLM2-135M)", "generation.py", ["--tokens", "32"], [],
          metrics=(Metric("best_tok_s", "tokens/s (best engine)", "llama.cpp-class CPU decode", "llama.cpp"),
                   Metric("speedup", "speed-up over fp32 torch"), Metric("ttft_ms", "time to first token ms"))),
    Bench("kge", "KG embeddings link prediction", "kge.py", ["umls", "complex", "--max-minutes", "1"],
          ["fb15k-237", "complex"], needs=("kge_benchmarks",),
          metrics=(Metric("MRR", "MRR (filtered)", "UMLS: ConvE .94; FB15k-237: ComplEx-N3 .37, RotatE .338",
                          "Dettmers 2018; Lacroix 2018; Sun 2019"),
                   Metric("H@10", "Hits@10", "FB15k-237: ComplEx-N3 .56, RotatE .533", "Lacroix 2018; Sun 2019"))),
    Bench("kg_ingest", "graph store ingest + neighbourhood queries (FB15k-237)", "kg_ingest.py",
          ["--repeats", "1", "--queries", "100"], [], needs=("kge_benchmarks",),
          metrics=(Metric("triples_per_s", "triples/s ingested"), Metric("p50_ms", "neighbours p50 ms"))),
    Bench("recommend", "recommendation, Last.fm in the KGCN protocol", "recommend.py",
          ["--epochs-scale", "0.2", "--requests", "50"], [], needs=("hetrec2011-lastfm-2k", "kgcn-music-kg"),
          timeout_quick_s=420,
          metrics=(Metric("AUC", "CTR AUC", "KGCN .796", "Wang et al. 2019, KGCN, Last.fm"),
                   Metric("F1", "CTR F1", "KGCN .721", "Wang et al. 2019, KGCN, Last.fm"),
                   Metric("R@20", "Recall@20"))),
    Bench("retrieval", "customer-service retrieval (Bitext held-out queries)", "retrieval.py",
          ["--max-queries", "200", "--skip-banking77"], [], needs=("bitext_customer_support",),
          metrics=(Metric("R@1", "Recall@1", "≥ 0.95", "issue target"), Metric("MRR@10", "MRR@10"))),
    Bench("customer_service", "customer-service answers (generated, grounded)", "customer_service.py",
          ["--gen-queries", "8", "--stream-queries", "4", "--dialogues", "2"], [], needs=("bitext_customer_support",),
          timeout_quick_s=420,
          metrics=(Metric("rouge_l", "ROUGE-L"), Metric("intent_acc", "intent accuracy"),
                   Metric("p50_s", "answer p50 s"))),
    Bench("banking77", "intent classifier toolbox (full FT, LoRA, distil, prune, int8, ensemble)", "banking77.py",
          None, [], needs=("banking77",), note="trains every method: about an hour",
          metrics=(Metric("accuracy", "test accuracy (full FT)", ".9336", "Casanueva et al. 2020, USE+ConveRT"),
                   Metric("macro_f1", "macro-F1"))),
    Bench("sentiment_summary", "financial sentiment, default model on held-out data (issue #21's line)",
          "sentiment.py", None, ["--only", "summary", "--threads", "2"],
          note="repeats sentiment_http and topics", needs=("financial_phrasebank",),
          metrics=(Metric("tweet_acc", "tweets held-out accuracy", "≥ 0.87", "issue #21 target"),
                   Metric("pb50_acc", "PhraseBank-50 accuracy (eval only)", ".86 (FinBERT, trained on it); ≥ 0.80",
                          FINBERT + "; issue #21 target"),
                   Metric("allagree_acc", "AllAgree accuracy", ".97 (FinBERT)", FINBERT),
                   Metric("trained_acc", "PhraseBank-trained model, 928 test sentences", "≥ 0.87 (FinBERT .86)",
                          FINBERT + "; issue #21 target"),
                   Metric("trained_f1", "its macro-F1", "≥ 0.85 (FinBERT .84)", FINBERT + "; issue #21 target"))),
    Bench("sentiment_phrasebank", "sentiment classifier trained with PhraseBank", "sentiment.py", None, [],
          needs=("financial_phrasebank",), note="trains the candidates: about an hour",
          metrics=(Metric("acc", "PhraseBank-50 accuracy", ".86", FINBERT),
                   Metric("macro_f1", "macro-F1", ".84", FINBERT),
                   Metric("allagree_acc", "AllAgree accuracy", ".97", FINBERT))),
)  # fmt: skip


def shared_data() -> Path:
    env = os.environ.get("KGNLP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def summary_of(output: str) -> dict[str, str]:
    """The last line made only of ``NAME=value`` tokens (at least two), as a dict; {} when none."""
    for line in reversed(output.strip().splitlines()):
        tokens = line.split()
        if len(tokens) >= 2 and all("=" in t and not t.startswith("=") for t in tokens):
            return dict(t.split("=", 1) for t in tokens)
    return {}


def run_one(bench: Bench, profile: str, out_dir: Path, data: Path) -> dict[str, object]:
    args = bench.quick if profile == "quick" else bench.full
    cmd = [sys.executable, f"benchmarks/{bench.script}", *(args or [])]
    shown = " ".join([".venv/bin/python", *cmd[1:]])
    row: dict[str, object] = {"name": bench.name, "task": bench.task, "command": shown, "values": {}}
    missing = [n for n in bench.needs if not (data / n).exists()]
    if args is None:
        return {**row, "status": "skipped", "reason": f"full profile only ({bench.note})"}
    if missing:
        return {**row, "status": "skipped", "reason": f"needs {', '.join(missing)} under {data}"}
    timeout = bench.timeout_quick_s if profile == "quick" else 4 * 3600
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KGNLP_SHARED_DATA": str(data), **bench.env}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, output, code = proc.stdout, proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        output, code = stdout + f"\n(timed out after {timeout} s)", -1
    seconds = time.monotonic() - t0
    (out_dir / f"{bench.name}.log").write_text(f"$ {shown}\n{output}")
    values = summary_of(stdout)
    if code == 0 and not values and "skipped" in stdout.lower():  # e.g. "skipped: FB15k-237 not found"
        return {**row, "status": "skipped", "reason": "the benchmark skipped itself", "seconds": round(seconds, 1)}
    if code != 0 or not values:
        why = f"exit {code}" if code != 0 else "no NAME=value summary line"
        return {**row, "status": "failed", "reason": why, "seconds": round(seconds, 1), "tail": output[-1500:]}
    return {**row, "status": "ok", "values": values, "seconds": round(seconds, 1)}


def machine() -> dict[str, object]:
    from kgnlp.cpu import cpu_key

    return {"cpu": cpu_key(), "cores": os.cpu_count(), "python": platform.python_version()}


def write_report(rows: list[dict[str, object]], profile: str, out_dir: Path, started: datetime, cmd: str) -> Path:
    info = {"profile": profile, "date": started.isoformat(timespec="seconds"), "command": cmd, **machine()}
    (out_dir / "report.json").write_text(json.dumps({"run": info, "benchmarks": rows}, indent=2, default=str))
    lines = [
        f"# Benchmark report ({profile} profile)",
        "",
        f"{info['date']} · {info['cpu']} · Python {info['python']} · `{cmd}`",
        "",
        "| benchmark | task | metric | ours | published / target | source | s | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_name = {b.name: b for b in SUITE}
    for r in rows:
        bench = by_name[str(r["name"])]
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['task']} | – | **{r['status']}**: {r.get('reason', '')} | – | – | "
                         f"{r.get('seconds', '')} | `{r['command']}` |")  # fmt: skip
            continue
        values = r["values"]
        assert isinstance(values, dict)
        for i, m in enumerate(bench.metrics):
            ours = values.get(m.key, "–")
            first = i == 0
            lines.append(
                f"| {r['name'] if first else ''} | {r['task'] if first else ''} | {m.label} | {ours} | {m.anchor} "
                f"| {m.source} | {r['seconds'] if first else ''} | {'`' + str(r['command']) + '`' if first else ''} |"
            )
    lines += [
        "",
        "Quick figures come from small runs (see each command): they show the code runs and an order of",
        "magnitude; the README's figures come from the full commands. Logs: one file per benchmark here.",
    ]
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small but real runs (default)")
    group.add_argument("--full", action="store_true", help="the figures the README reports (hours)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)
    profile = "full" if args.full else "quick"
    if args.list:
        for b in SUITE:
            print(f"{b.name:22} {b.task}  (needs: {', '.join(b.needs) or '-'})")
        return 0
    wanted = [n for n in args.only.split(",") if n]
    unknown = sorted(set(wanted) - {b.name for b in SUITE})
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; --list shows them")
    chosen = [b for b in SUITE if not wanted or b.name in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    cmd = " ".join(
        [".venv/bin/python benchmarks/harness.py", f"--{profile}", *(["--only", args.only] if wanted else [])]
    )
    rows = []
    data = shared_data()
    t0 = time.monotonic()
    for bench in chosen:
        print(f"[{time.monotonic() - t0:6.0f} s] {bench.name} ...", flush=True)
        row = run_one(bench, profile, args.out, data)
        print(f"[{time.monotonic() - t0:6.0f} s] {bench.name}: {row['status']} {row.get('reason', '')}", flush=True)
        if row["status"] == "failed":
            print(str(row.get("tail", ""))[-800:], flush=True)
        rows.append(row)
    report = write_report(rows, profile, args.out, started, cmd)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    print(f"report: {report}")
    print(f"command: {cmd}")
    print(f"ok={counts['ok']} skipped={counts['skipped']} failed={counts['failed']} "
          f"minutes={(time.monotonic() - t0) / 60:.1f}")  # fmt: skip
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

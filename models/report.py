"""Compare classifier runs: accuracy/F1, latency, throughput, parameters, disk size, peak memory.

Quality comes from each run's ``metrics.json`` (its test split); efficiency is measured here
on the same machine, one run after another, so rows are comparable with each other. Each row is
measured in a fresh Python process (``python -m models.report MEMBER...``), so its peak memory is
its own: in one process ``ru_maxrss`` only grows, and every row after the largest model would
report that model's peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kgnlp.errors import NotFoundError

__all__ = ["collect_rows", "measure_classifier", "measure_members", "plot_rows", "print_table"]

_PROBE = [
    "I am still waiting on my card, it has been two weeks.",
    "How do I top up my account with a cheque?",
    "Why was I charged an extra fee for my transfer abroad?",
    "The company's quarterly profit rose by 12 percent.",
]


def _disk_bytes(run_dir: Path) -> int:
    for sub in ("model_int8", "model", "adapter"):
        folder = run_dir / sub
        if folder.is_dir():
            return sum(
                p.stat().st_size
                for p in folder.rglob("*")
                if p.is_file() and p.suffix in (".safetensors", ".pt", ".bin")
            )
    return 0


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since it started its program.

    Linux: ``VmHWM`` of ``/proc/self/status``, which belongs to the address space ``exec`` creates;
    ``ru_maxrss`` survives ``fork`` + ``exec``, so a child of a large process (pytest, a benchmark)
    would report its parent's peak. Elsewhere ``ru_maxrss`` is the best there is.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_members(members: list[Path]) -> dict[str, Any]:
    """Load ``members`` (one run, or an ensemble's runs) in *this* process and measure them.

    Returns latency/throughput, parameters, ``peak_rss_mb`` (this process's peak) and
    ``model_rss_mb`` (the peak minus the interpreter with torch and transformers already imported).
    """
    import torch  # noqa: F401  (imported before the baseline, so it is not counted as the model's)
    import transformers  # noqa: F401

    from models.classify import load_classifier
    from models.ensemble import MeanEnsemble

    baseline = _peak_rss_mb()
    clfs = [load_classifier(p) for p in members]
    clf = MeanEnsemble(clfs) if len(clfs) > 1 else clfs[0]
    row: dict[str, Any] = dict(measure_classifier(clf))
    row["params"] = sum(sum(p.numel() for p in c.model.parameters()) for c in clfs) or None
    peak = _peak_rss_mb()
    row["peak_rss_mb"] = round(peak, 0)
    row["model_rss_mb"] = round(peak - baseline, 0)
    return row


def _measure_in_fresh_process(members: list[Path], timeout_s: float = 1800) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "models.report", *map(str, members)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {members[0]} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def measure_classifier(clf: Any, n_single: int = 20, batch: int = 64) -> dict[str, float]:
    """Latency at batch 1 (median ms) and throughput at ``batch`` (texts/s) on probe texts."""
    import statistics

    clf.predict_proba(_PROBE[:1])  # warm-up
    times = []
    for i in range(n_single):
        t0 = time.perf_counter()
        clf.predict_proba([_PROBE[i % len(_PROBE)]])
        times.append(time.perf_counter() - t0)
    texts = (_PROBE * (batch // len(_PROBE) + 1))[:batch]
    t0 = time.perf_counter()
    clf.predict_proba(texts)
    elapsed = time.perf_counter() - t0
    return {"latency_ms": statistics.median(times) * 1000, "throughput": batch / elapsed}


def collect_rows(run_dirs: list[Path], measure: bool = True) -> list[dict[str, Any]]:
    """One row per run: test quality from ``metrics.json`` plus measured efficiency.

    Args:
        run_dirs: classifier run directories (``finetune``, ``prune_run``, ``quantize_run`` or ``ensemble_runs``).
        measure: load each model and time it (an ensemble's cost is the sum of its members').

    Returns:
        Rows with name, method, accuracy, macro_f1, latency_ms, throughput, params, disk_mb,
        peak_rss_mb and model_rss_mb (each row measured in its own fresh process).
    """
    rows = []
    for run in map(Path, run_dirs):
        mfile = run / "metrics.json"
        if not mfile.is_file():
            raise NotFoundError(f"{run} has no metrics.json")
        m = json.loads(mfile.read_text())
        test = m.get("test", {})
        row: dict[str, Any] = {
            "name": run.name,
            "method": m.get("method", "?"),
            "accuracy": test.get("accuracy", float("nan")),
            "macro_f1": test.get("macro_f1", float("nan")),
            "train_examples": m.get("train_examples"),
            "train_minutes": round(m["train_seconds"] / 60, 1) if "train_seconds" in m else None,
        }
        if measure:
            members = [Path(p) for p in m.get("members", [])] or [run]
            row.update(_measure_in_fresh_process(members))
            row["disk_mb"] = round(sum(_disk_bytes(p) for p in members) / 1e6, 1)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows as a rich table (stdout)."""
    from rich.console import Console
    from rich.table import Table

    cols = ["name", "method", "accuracy", "macro_f1", "latency_ms", "throughput", "params", "disk_mb", "peak_rss_mb",
            "model_rss_mb"]  # fmt: skip
    table = Table(*cols)
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.4f}" if isinstance(v, float) and c in ("accuracy", "macro_f1") else
                         f"{v:.1f}" if isinstance(v, float) else "" if v is None else str(v))  # fmt: skip
        table.add_row(*cells)
    Console(width=160).print(table)


def plot_rows(rows: list[dict[str, Any]], out_png: Path) -> Path | None:
    """Accuracy vs latency scatter (PNG); returns None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r.get("latency_ms") is None:
            continue
        ax.scatter(r["latency_ms"], r["accuracy"])
        ax.annotate(r["name"], (r["latency_ms"], r["accuracy"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("latency at batch 1 (ms, CPU)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)


if __name__ == "__main__":  # one row, measured in this fresh process (``collect_rows`` runs it)
    print(json.dumps(measure_members([Path(p) for p in sys.argv[1:]])))

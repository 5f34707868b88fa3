"""banking77 intent classification end to end on CPU: full FT, LoRA, distilled, pruned, int8, ensemble.

Data: ``../shared/data/banking77/train.csv`` only, split stratified 80/10/10 (seed 13) into
train / validation / test; the official test set is never touched. Every row reports accuracy
and macro-F1 on the same 10% test part.

Run:
    .venv/bin/python benchmarks/banking77.py --out runs/banking77 [--stages full,lora,distill,prune,int8,ensemble]

Stages reuse earlier run directories (distill/prune/int8/ensemble need ``full``), so a stage
can be rerun alone. Ends with one ``NAME=value`` summary line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("full", "lora", "distill", "prune", "int8", "ensemble")


def _config(out: Path, name: str, **overrides: object) -> object:
    from models.config import build_config

    data = REPO.parent / "shared" / "data" / "banking77" / "train.csv"
    raw: dict = {
        "task": "classify",
        "model": "all-minilm-l6-v2",
        "output_dir": str(out / name),
        "data": {"train": str(data), "label_field": "category", "val_fraction": 0.1, "test_fraction": 0.1},
        "method": {"kind": "full"},
        # the baseline = data/examples/banking77_full.yaml (4 epochs, ~7 min on 2 quiet cores)
        "train": {
            "epochs": 4,
            "batch_size": 32,
            "max_len": 64,
            "lr": 1.5e-4,
            "head_lr": 2e-3,
            "warmup_ratio": 0.06,
            "scheduler": "linear",
            "early_stopping_patience": 2,
            "max_minutes": 45,
        },
    }
    for key, value in overrides.items():
        if "__" not in key:
            raw[key] = value
            continue
        section, field = key.split("__")
        raw[section] = {**raw.get(section, {}), **value} if field == "" else {**raw.get(section, {}), field: value}
    return build_config(raw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "banking77")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--short-minutes", type=float, default=12.0, help="time cap of each non-baseline training run")
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it
    print("command:", shlex.join([".venv/bin/python", "benchmarks/banking77.py", *sys.argv[1:]]))
    if not (REPO.parent / "shared" / "data" / "banking77" / "train.csv").is_file():
        print("SKIP: ../shared/data/banking77 is absent")
        return 0
    from models.finetune import finetune

    stages = [s for s in args.stages.split(",") if s]
    started = time.monotonic()
    out: Path = args.out
    short = args.short_minutes
    runs: list[Path] = []
    if "full" in stages:
        finetune(_config(out, "full"))
    runs.append(out / "full")
    if "lora" in stages:
        finetune(
            _config(
                out, "lora",
                method__kind="lora", method__r=16, method__alpha=32,
                method__target_modules=["query", "key", "value", "dense"],  # every linear layer
                train__lr=1e-3, train__epochs=6, train__max_minutes=short,
            )
        )  # fmt: skip
    if (out / "lora" / "metrics.json").is_file():
        runs.append(out / "lora")
    if "distill" in stages:
        from models.prune import truncate_layers

        student = truncate_layers(REPO / "runs" / "_student_base", keep=3)
        finetune(
            _config(
                out, "distilled",
                model=str(student), distill__={"teacher": str(out / "full"), "temperature": 2.0, "alpha": 0.7},
                train__epochs=6, train__max_minutes=short,
            )
        )  # fmt: skip
    if (out / "distilled" / "metrics.json").is_file():
        runs.append(out / "distilled")
    if "prune" in stages:
        from models.prune import prune_run

        prune_run(out / "full", out / "pruned", ffn_keep=0.5, heads_keep=1.0, finetune_minutes=short)
    if (out / "pruned" / "metrics.json").is_file():
        runs.append(out / "pruned")
    if "int8" in stages:
        from models.quantize import quantize_run

        quantize_run(out / "full", out / "int8")
    if (out / "int8" / "metrics.json").is_file():
        runs.append(out / "int8")
    if "ensemble" in stages:
        from models.ensemble import ensemble_runs

        members = [r for r in (out / "full", out / "lora", out / "distilled") if (r / "metrics.json").is_file()]
        ensemble_runs(members, out / "ensemble", method="stacking")
    if (out / "ensemble" / "metrics.json").is_file():
        runs.append(out / "ensemble")

    from models.report import collect_rows, plot_rows, print_table

    rows = collect_rows(runs, measure=True)
    print_table(rows)
    (out / "table.json").write_text(json.dumps(rows, indent=2))
    print("chart:", plot_rows(rows, out / "report.png"))
    base = next(r for r in rows if r["name"] == "full")
    minutes = (time.monotonic() - started) / 60
    print(
        f"accuracy={base['accuracy']:.4f} macro_f1={base['macro_f1']:.4f} "
        + " ".join(f"{r['name']}_acc={r['accuracy']:.4f}" for r in rows if r["name"] != "full")
        + f" minutes={minutes:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Financial sentiment (positive / neutral / negative): candidates compared on one PhraseBank test split.

Data: ``../shared/data/financial_phrasebank`` 50Agree, de-duplicated, split stratified
68/8/24 (seed 13) into train / validation / test (2,630 / 310 / 928: a test part of
≥ 900 sentences, so one sentence is 0.11 points); the twitter financial-news set
(``../shared/data/twitter_financial_news_sentiment/sent_train.csv``; bearish→negative,
bullish→positive) adds a stratified 2,000 tweets to the training part of the ``*-pbtw`` runs and
the distillation transfer set. Every row reports accuracy, macro-F1, the accuracy on the test
rows that are also in AllAgree, top-label ECE, texts/s (on the test sentences, batch 64, this
process's thread count), size (fp32 parameters, or the int8 state for ``served``) and training minutes.

Candidates (stages): ``minilm-pb``, ``minilm-pbtw``, ``minilm-dapt-pb`` (domain-adaptive MLM
first), ``smollm2-lora-pb`` (LoRA + classification head), ``zeroshot``/``fewshot`` (prompting
SmolLM2-135M-Instruct), ``distill`` (MiniLM student of a teacher run), ``ensemble`` (mean /
weighted / stacking on validation), ``served`` (the chosen run(s), int8 + temperature, as
registered). Stages reuse finished run directories, so one can be rerun alone.

Run (``--threads 1`` by default: on 2 cores shared with other jobs, 2 torch threads stalled):
    .venv/bin/python benchmarks/sentiment.py [--out runs/sentiment] [--stages ...] [--chosen NAME[,NAME]]
    .venv/bin/python benchmarks/sentiment.py --only speed --threads 2   # the registered model's throughput only
    .venv/bin/python benchmarks/sentiment.py --only summary --threads 2 # issue #21's figures on one line

Ends with one ``NAME=value`` summary line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = (
    "minilm-pb",
    "minilm-pbsyn",
    "minilm-pbtw",
    "minilm-dapt-pb",
    "mpnet-pb",
    "mpnet-pbsyn",
    "smollm2-lora-pb",
    "zeroshot",
    "fewshot",
    "distill",
    "ensemble",
    "served",
)
ENSEMBLES = ("ensemble-mean", "ensemble-weighted", "ensemble-stacking")
FT_STAGES = ("minilm-pb", "minilm-pbsyn", "minilm-pbtw", "minilm-dapt-pb", "mpnet-pb", "mpnet-pbsyn", "smollm2-lora-pb")
CMD = ".venv/bin/python benchmarks/sentiment.py --stages {}"


def _splits(out: Path, shared: Path, kind: str) -> Any:
    from apps.sentiment.training import candidate_splits

    tw = shared / "twitter_financial_news_sentiment" / "sent_train.csv"
    return candidate_splits(kind, out / f"splits_{kind}", shared / "financial_phrasebank", tw)


def _speed(predict: Any, texts: list[str], repeats: int = 2) -> dict[str, float]:
    """Texts/s over ``texts`` (the caller batches), best of ``repeats``, and batch-1 median latency."""
    predict(texts[:64])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(texts)
        best = max(best, len(texts) / (time.perf_counter() - t0))
    lat = []
    for t in texts[:20]:
        t0 = time.perf_counter()
        predict([t])
        lat.append(time.perf_counter() - t0)
    return {"texts_per_s": best, "latency_ms_b1": statistics.median(lat) * 1000}


def _distilled(out: Path) -> list[str]:
    """The distilled students' stage names (``distill-TEACHER-lLAYERS-TRANSFER``) found in ``out``."""
    return sorted(p.name for p in out.glob("distill-*") if (p / "bench.json").is_file())


def _row(name: str, out: Path, proba_test: Any, proba_val: Any, test: Any, extra: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from apps.sentiment.training import evaluate_proba

    _, ty, tagree = test
    m = evaluate_proba(proba_test, ty, tagree)
    row = {
        "name": name,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "allagree_accuracy": m.get("allagree_accuracy"),
        "ece": m["ece"],
        **extra,
    }
    (out / name).mkdir(parents=True, exist_ok=True)
    arrays = {"test": np.asarray(proba_test)}
    if proba_val is not None:
        arrays["val"] = np.asarray(proba_val)
    np.savez(out / name / "probs.npz", **arrays)
    (out / name / "bench.json").write_text(json.dumps(row, indent=2))
    print(f"[{name}] " + json.dumps({k: v for k, v in row.items() if k != "command"}), flush=True)
    return row


def _eval_run(name: str, run_dir: Path, out: Path, val: Any, test: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Float test/val probabilities of a fine-tuning run, its speed and size."""
    import numpy as np

    from apps.sentiment.classifier import LABELS
    from models.classify import load_classifier

    clf = load_classifier(run_dir, batch_size=64)
    clf.max_len = 64
    order = [clf.labels.index(lab) for lab in LABELS]
    t0 = time.perf_counter()
    pt = clf.predict_proba(test[0])[:, order]
    speed = len(test[0]) / (time.perf_counter() - t0)
    pv = clf.predict_proba(val[0])[:, order]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    params = sum(p.numel() for p in clf.model.parameters())
    return _row(
        name,
        out,
        pt,
        pv,
        test,
        {
            "texts_per_s": round(speed, 1),
            "size_mb": round(params * 4 / 1e6, 1),
            "params_m": round(params / 1e6, 1),
            "train_min": round(metrics["train_seconds"] / 60 + extra.pop("extra_min", 0.0), 1),
            "form": "fp32",
            **extra,
            "val_accuracy": float((np.asarray(pv).argmax(1) == np.asarray(val[1])).mean()),
        },
    )


def run_speed_only(home: Path | None, texts_path: Path | None) -> int:
    """Throughput of the newest registered model (``--only speed``)."""
    from apps.sentiment.classifier import load_latest
    from apps.sentiment.classifier_data import load_twitter, shipped_twitter_csv
    from apps.sentiment.training import read_split
    from kgnlp.files import default_home

    home = home or default_home()
    if texts_path is not None:
        texts = read_split(texts_path)[0]
    else:
        texts = [t for t, _ in load_twitter(shipped_twitter_csv())][:1024]
    clf = load_latest(home, batch_size=64)
    info = clf.info()
    s = _speed(clf.predict, texts, repeats=3)
    print(f"model {clf.name} ({info['kind']}, {info['quantize']}), {len(texts)} texts, batch 64")
    print(json.dumps(s))
    print(f"texts_per_s={s['texts_per_s']:.1f} latency_ms_b1={s['latency_ms_b1']:.1f} n={len(texts)}")
    return 0


def _child_summary(script: str, *args: str) -> dict[str, str]:
    """Run another benchmark and return its ``NAME=value`` summary (``{}`` when it printed none)."""
    import subprocess

    from benchmarks.harness import summary_of

    proc = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO, capture_output=True, text=True)
    found = summary_of(proc.stdout)
    if not found:
        print(f"{script} printed no summary (exit {proc.returncode}): {proc.stderr[-500:]}")
    return found


def run_summary(home: Path | None, out: Path) -> int:
    """Issue #21's figures for the registered (default) model, on held-out data only (``--only summary``).

    Tweets: the test part of the shipped tweets' three-way split (never used for a choice).
    PhraseBank-50 (all 3,868 de-duplicated sentences, evaluation only) and AllAgree when
    ``../shared`` has them (not when the served model was trained on PhraseBank: then it is not
    held out). Served speed and topics: ``sentiment_http.py`` and ``topics.py``. The PhraseBank-
    trained model's held-out figures come from the full run of this script (``--stages``).
    """
    import tempfile

    import numpy as np

    from apps.sentiment.classifier import LABELS, load_latest
    from apps.sentiment.classifier_data import load_phrasebank, prepare_twitter_three_way_splits, shipped_twitter_csv
    from apps.sentiment.training import read_split
    from kgnlp.files import default_home

    home = home or default_home()
    clf = load_latest(home, batch_size=64)
    info = clf.info()
    trained_on = json.dumps(info.get("trained_on") or info.get("data") or {})
    uses_phrasebank = "phrasebank" in trained_on.lower()
    print(f"model {clf.name} ({info.get('kind')}); PhraseBank in training: {uses_phrasebank}")

    def accuracy(texts: list[str], y: list[int]) -> tuple[float, float]:
        from models.classify import classification_metrics

        m = classification_metrics(y, np.asarray(clf.predict_proba(texts)))
        return m["accuracy"], m["macro_f1"]

    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        splits, _ = prepare_twitter_three_way_splits(Path(tmp), shipped_twitter_csv(), seed=13)
        texts, y, _ = read_split(splits.test)
    acc, f1 = accuracy(texts, y)
    print(f"tweets, own held-out test part ({len(texts)}): accuracy {acc:.4f} macro-F1 {f1:.4f}")
    figures.update(tweet_acc=f"{acc:.4f}", tweet_f1=f"{f1:.4f}")
    pb = REPO.parent / "shared" / "data" / "financial_phrasebank"
    if pb.is_dir() and not uses_phrasebank:
        rows = load_phrasebank(pb, "50Agree")
        acc, f1 = accuracy([t for t, _ in rows], [LABELS.index(lab) for _, lab in rows])
        agree = load_phrasebank(pb, "AllAgree")
        agree_acc, _ = accuracy([t for t, _ in agree], [LABELS.index(lab) for _, lab in agree])
        print(f"PhraseBank-50 ({len(rows)}, evaluation only): accuracy {acc:.4f} macro-F1 {f1:.4f}; "
              f"AllAgree ({len(agree)}) {agree_acc:.4f}")  # fmt: skip
        figures.update(pb50_acc=f"{acc:.4f}", pb50_f1=f"{f1:.4f}", allagree_acc=f"{agree_acc:.4f}")
    else:
        why = "the model was trained on it" if uses_phrasebank else "../shared is absent"
        print(f"PhraseBank-50 not scored: {why}")
        figures.update(pb50_acc="nan", pb50_f1="nan", allagree_acc="nan")
    figures.update(_trained_figures(out))
    http = _child_summary("sentiment_http.py", "--texts", "2048")
    topics = _child_summary("topics.py")
    figures["texts_per_s_http"] = http.get("texts_per_s_http", "nan")
    figures["topics_micro_f1"] = topics.get("topics_micro_f1", "nan")
    targets = {"tweet_acc": 0.87, "pb50_acc": 0.80, "texts_per_s_http": 300.0, "topics_micro_f1": 0.80}
    targets.update(trained_acc=0.87, trained_f1=0.85, trained_allagree=0.97)
    met = sum(float(figures[k]) >= v for k, v in targets.items() if figures[k] != "nan")
    print("targets (trained_*: the PhraseBank-trained model; the rest: the default): "
          + ", ".join(f"{k} >= {v}" for k, v in targets.items()))  # fmt: skip
    print("command: .venv/bin/python benchmarks/sentiment.py --only summary --threads 2")
    print(" ".join(f"{k}={v}" for k, v in figures.items()) + f" targets_met={met}/{len(targets)}")
    return 0


def _trained_figures(out: Path) -> dict[str, str]:
    """The PhraseBank-trained model's figures, measured now on the 928 test sentences it never saw: the
    newest model the ``served`` stage registered in ``OUT/served_home`` (its recipe chosen on validation)."""
    from apps.sentiment.classifier import load_registered, registered_models
    from apps.sentiment.training import evaluate_proba, read_split

    found = registered_models(out / "served_home")
    test_csv = out / "splits_pb" / "test.csv"
    if not found or not test_csv.is_file():
        print(f"trained model not scored: run `--stages served --chosen CHOSEN` first ({out / 'served_home'})")
        return {"trained_acc": "nan", "trained_f1": "nan", "trained_allagree": "nan"}
    clf = load_registered(found[-1])
    texts, y, agree = read_split(test_csv)
    m = evaluate_proba(clf.predict_proba(texts), y, agree)
    print(f"trained model {clf.name} ({clf.info()['quantize']}), PhraseBank-50 test part ({len(y)}): "
          f"accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} "
          f"AllAgree ({m['allagree_n']}) {m['allagree_accuracy']:.4f}")  # fmt: skip
    return {
        "trained_acc": f"{m['accuracy']:.4f}",
        "trained_f1": f"{m['macro_f1']:.4f}",
        "trained_allagree": f"{m['allagree_accuracy']:.4f}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "sentiment")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--only", choices=["speed", "summary"],
                    help="speed: the served model's speed; summary: issue #21's figures on one line")  # fmt: skip
    ap.add_argument("--home", type=Path, help="KGNLP_HOME for --only speed / --register")
    ap.add_argument("--texts", type=Path, help="CSV with a text column for --only speed (default: shipped tweets)")
    ap.add_argument("--chosen", default="minilm-pb", help="run(s) served: NAME or NAME,NAME (mean ensemble)")
    ap.add_argument("--weights", default="", help="member weights for --chosen (default equal)")
    ap.add_argument("--teacher", default="minilm-pbtw", help="teacher run of the distill stage")
    ap.add_argument("--student-layers", type=int, default=3, help="encoder layers of the distilled MiniLM student")
    ap.add_argument("--transfer", choices=["pb", "pbtw"], default="pbtw",
                    help="distillation transfer set: PhraseBank's training part (+ 2,000 tweets for pbtw)")  # fmt: skip
    ap.add_argument("--alpha", type=float, default=0.7, help="distillation: weight of the teacher (KL) term")
    ap.add_argument("--register", action="store_true", help="also register the served model in KGNLP_HOME")
    ap.add_argument("--shots", type=int, default=1, help="few-shot examples per label")
    ap.add_argument("--prompt-limit", type=int, default=0, help="few/zero-shot on a random test subset (0: all)")
    ap.add_argument("--reuse-prompt-probs", action="store_true", help="reuse saved prompting probabilities")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared 2-core machine)")
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it
    print("command:", shlex.join([".venv/bin/python", "benchmarks/sentiment.py", *sys.argv[1:]]), flush=True)
    import torch

    torch.set_num_threads(args.threads)
    if args.only == "speed":
        return run_speed_only(args.home, args.texts)
    if args.only == "summary":
        return run_summary(args.home, args.out)
    shared = REPO.parent / "shared" / "data"
    if not (shared / "financial_phrasebank").is_dir():
        print("SKIP: ../shared/data/financial_phrasebank is absent")
        return 0
    import numpy as np

    from apps.sentiment.training import CANDIDATES, DAPT_STEPS, candidate_config, dapt_texts, read_split
    from kgnlp.files import default_home
    from models.catalog import CATALOG
    from models.finetune import finetune
    from models.provision import ModelCache

    out: Path = args.out
    stages = [s for s in args.stages.split(",") if s]
    splits = {k: _splits(out, shared, k) for k in ("pb", "pbtw", "pbsyn")}
    val = read_split(splits["pb"].validation)
    test = read_split(splits["pb"].test)
    for k in ("pbtw", "pbsyn"):
        assert splits["pb"].validation.read_bytes() == splits[k].validation.read_bytes(), "one validation split"
        assert splits["pb"].test.read_bytes() == splits[k].test.read_bytes(), "test splits must be identical"
    print(f"splits: {json.dumps(splits['pbtw'].counts)}", flush=True)
    model_home = default_home() / "models"
    started = time.monotonic()

    for name in FT_STAGES:
        if name not in stages:
            continue
        spec = CANDIDATES[name]
        extra: dict[str, Any] = {"command": CMD.format(name)}
        model = None
        if spec["model"] in CATALOG:  # pulled (and verified) on first use
            model = str(ModelCache(default_home()).ensure(spec["model"]))
        if spec["model"] == "@dapt":
            from models.pretrain import continue_pretraining

            dapt_dir = out / "dapt_minilm"
            if not (dapt_dir / "config.json").is_file():
                t0 = time.monotonic()
                texts = dapt_texts(splits["pb"], shared / "twitter_financial_news_sentiment" / "sent_train.csv")
                stats = continue_pretraining(
                    model_home / "all-minilm-l6-v2", texts, dapt_dir, "mlm", 1, 5e-5, 32, 64, max_steps=DAPT_STEPS
                )
                stats["minutes"] = (time.monotonic() - t0) / 60
                (out / "dapt_minilm.json").write_text(json.dumps(stats))
                print(f"DAPT: {stats}", flush=True)
            extra["extra_min"] = json.loads((out / "dapt_minilm.json").read_text())["minutes"]
            model = str(dapt_dir)
        cfg = candidate_config(name, splits[spec["splits"]], out, model=model)
        if not (cfg.output_dir / "metrics.json").is_file():
            finetune(cfg, log=lambda s: print(s, flush=True))
        _eval_run(name, cfg.output_dir, out, val, test, extra)

    gen_path = model_home / "smollm2-135m-instruct"
    for name, k in (("zeroshot", 0), ("fewshot", args.shots)):
        if name not in stages:
            continue
        import random

        from apps.sentiment.classifier import LABELS
        from apps.sentiment.classifier_prompting import PromptClassifier, pick_shots

        tr_texts, tr_y, _ = read_split(splits["pb"].train)
        shots = pick_shots(tr_texts, [LABELS[i] for i in tr_y], k) if k else []
        idx = list(range(len(test[0])))
        if args.prompt_limit and args.prompt_limit < len(idx):  # CPU time: a seeded random subset of the test split
            idx = sorted(random.Random(0).sample(idx, args.prompt_limit))
        sub = tuple([part[i] for i in idx] for part in test)
        sub_only = len(idx) < len(test[0])
        clf = PromptClassifier(gen_path, shots, batch_size=16)
        cached = out / name / "probs.npz"
        t0 = time.perf_counter()
        if args.reuse_prompt_probs and cached.is_file() and len(np.load(cached)["test"]) == len(idx):
            pt = np.load(cached)["test"]
            speed = json.loads((out / name / "bench.json").read_text())["texts_per_s"]
        else:
            pt = clf.predict_proba(sub[0])
            speed = len(sub[0]) / (time.perf_counter() - t0)
        # contextual calibration (Zhao et al. 2021): divide by the label prior of content-free inputs
        prior = clf.predict_proba(["N/A", "", "[MASK]"]).mean(0)
        pc = pt / prior
        pc /= pc.sum(1, keepdims=True)
        row = {
            "texts_per_s": round(speed, 1),
            "size_mb": round(134.5 * 4, 1),
            "params_m": 134.5,
            "train_min": 0.0,
            "command": CMD.format(name) + (f" --shots {k} --prompt-limit {args.prompt_limit}" if k else ""),
        }
        form = f"fp32, {len(shots)}-shot prompt" + (f", {len(idx)} test rows" if sub_only else "")
        _row(f"{name}-cc", out, pc, None, sub, {**row, "form": form + ", contextual calibration"})
        _row(name, out, pt, None, sub, {**row, "form": form})

    if "distill" in stages:
        from models.config import DistillConfig
        from models.prune import truncate_layers

        teacher = out / args.teacher
        name = f"distill-{args.teacher}-l{args.student_layers}-{args.transfer}" + (
            f"-a{args.alpha:g}" if args.alpha != 0.7 else ""
        )
        student = out / f"student_l{args.student_layers}"
        if not (student / "config.json").is_file():
            truncate_layers(student, args.student_layers, model_home / "all-minilm-l6-v2")
        recipe = {"pb": "minilm-pb", "pbtw": "minilm-pbtw"}[args.transfer]
        cfg = candidate_config(recipe, splits[args.transfer], out, model=str(student))
        cfg = cfg.model_copy(
            update={
                "output_dir": out / name,
                "distill": DistillConfig(teacher=teacher, temperature=2.0, alpha=args.alpha),
            }
        )
        t0 = time.monotonic()
        if not (cfg.output_dir / "metrics.json").is_file():
            finetune(cfg, log=lambda s: print(s, flush=True))
        _eval_run(
            name,
            cfg.output_dir,
            out,
            val,
            test,
            {
                "command": CMD.format("distill")
                + f" --teacher {args.teacher} --student-layers {args.student_layers} --transfer {args.transfer}"
                + (f" --alpha {args.alpha:g}" if args.alpha != 0.7 else ""),
                "teacher": args.teacher,
                "form": f"fp32, {args.student_layers}-layer MiniLM student of {args.teacher} on {args.transfer}"
                + f", alpha {args.alpha:g}",
            },
        )
        print(f"distill stage: {(time.monotonic() - t0) / 60:.1f} min (incl. teacher logits)", flush=True)

    if "ensemble" in stages:
        from models.ensemble import MeanEnsemble, StackingEnsemble, WeightedEnsemble

        names = [
            n
            for n in (*FT_STAGES, *_distilled(out))
            if (out / n / "probs.npz").is_file() and "val" in np.load(out / n / "probs.npz")
        ]
        rows = {n: json.loads((out / n / "bench.json").read_text()) for n in names}
        pv = [np.load(out / n / "probs.npz")["val"] for n in names]
        pt = [np.load(out / n / "probs.npz")["test"] for n in names]

        class _Fixed:  # the ensemble classes need members with .labels; probabilities are precomputed
            def __init__(self) -> None:
                self.labels = ["negative", "neutral", "positive"]

        members = [_Fixed() for _ in names]
        fused = {
            "mean": MeanEnsemble(members).combine(pt),  # type: ignore[arg-type]
            "weighted": (w := WeightedEnsemble(members).fit(pv, val[1])).combine(pt),  # type: ignore[arg-type]
            "stacking": StackingEnsemble(members).fit(pv, val[1]).combine(pt),  # type: ignore[arg-type]
        }
        speed = 1 / sum(1 / rows[n]["texts_per_s"] for n in names)
        for method, p in fused.items():
            _row(
                f"ensemble-{method}",
                out,
                p,
                None,
                test,
                {
                    "texts_per_s": round(speed, 1),
                    "size_mb": round(sum(rows[n]["size_mb"] for n in names), 1),
                    "params_m": round(sum(rows[n]["params_m"] for n in names), 1),
                    "train_min": round(sum(rows[n]["train_min"] for n in names), 1),
                    "form": f"fp32, members {'+'.join(names)}"
                    + (f", weights {[round(x, 2) for x in w.weights]}" if method == "weighted" else ""),
                    "command": CMD.format("ensemble"),
                },
            )

    if "served" in stages:
        from apps.sentiment.classifier import RegisteredClassifier
        from apps.sentiment.training import register_model

        chosen = [c for c in args.chosen.split(",") if c]
        weights = [float(x) for x in args.weights.split(",")] if args.weights else None
        run_dirs = [out / c for c in chosen]
        kind = CANDIDATES.get(chosen[0], {}).get("splits", "pbtw")  # a distilled student: pbtw's counts
        data = {"train": f"benchmark runs {chosen}", "splits": splits[kind].counts}
        minutes = sum(json.loads((out / c / "bench.json").read_text())["train_min"] for c in chosen)
        homes = [out / "served_home"] + ([args.home or default_home()] if args.register else [])
        for i, home in enumerate(homes):
            folder = register_model(
                home,
                run_dirs,
                "+".join(chosen),
                splits[kind],
                data,
                weights=weights,
                quantize=True,
                extra={"train_minutes": minutes, "recipe": chosen},
            )
            if i:
                print(f"registered for serving: {folder}")
                continue
            man = json.loads((folder / "manifest.json").read_text())
            clf = RegisteredClassifier(folder).load()
            lp = np.load(folder / "eval_log_proba.npz")["test"]
            t = man["calibration"]["temperature"]
            z = lp / t
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            s = _speed(clf.predict, test[0], repeats=3)
            from models.quantize import serialized_bytes

            size = sum(  # the ONNX graph's file where ONNX Runtime serves it
                m.graph.path.stat().st_size if m.graph is not None else serialized_bytes(m.model)
                for m in clf._members or []
            )
            row = _row(
                "served",
                out,
                p,
                None,
                test,
                {
                    "texts_per_s": round(s["texts_per_s"], 1),
                    "latency_ms_b1": round(s["latency_ms_b1"], 1),
                    "size_mb": round(size / 1e6, 1),
                    "params_m": round(man["params"] / 1e6, 1),
                    "train_min": round(minutes, 1),
                    "form": f"{clf.info()['quantize']}, T={t:.2f}, {'+'.join(chosen)}",
                    "ece_before": man["calibration"]["test_ece_before"],
                    "command": CMD.format("served") + f" --chosen {args.chosen}",
                },
            )
            print(
                f"calibration: T={t:.3f} test ECE {man['calibration']['test_ece_before']:.4f} → "
                f"{man['calibration']['test_ece_after']:.4f} (val {man['calibration']['val_ece_before']:.4f} → "
                f"{man['calibration']['val_ece_after']:.4f})"
            )
            assert abs(row["accuracy"] - man["metrics"]["test"]["accuracy"]) < 1e-9

    rows = [
        json.loads((out / n / "bench.json").read_text())
        for n in (
            *FT_STAGES,
            "zeroshot",
            "zeroshot-cc",
            "fewshot",
            "fewshot-cc",
            *_distilled(out),
            *ENSEMBLES,
            "served",
        )
        if (out / n / "bench.json").is_file()
    ]
    print(f"\nPhraseBank-50Agree test split: {len(test[0])} sentences ({sum(test[2])} also in AllAgree)")
    print(
        "| candidate | val acc (choice) | accuracy | macro-F1 | AllAgree acc | ECE | texts/s | size MB | params M "
        "| train min | form |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        aa = f"{r['allagree_accuracy']:.4f}" if r.get("allagree_accuracy") is not None else "-"
        va = f"{r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else "-"
        print(
            f"| {r['name']} | {va} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {aa} | {r['ece']:.3f} | "
            f"{r['texts_per_s']:.0f} | {r['size_mb']:.0f} | {r['params_m']:.1f} | {r['train_min']:.1f} | {r['form']} |"
        )
    (out / "table.json").write_text(json.dumps(rows, indent=2))
    # the served row when there is one, else the best *validation* accuracy (never a pick on test)
    best = next((r for r in rows if r["name"] == "served"), None) or max(
        (r for r in rows if r.get("val_accuracy") is not None), key=lambda r: r["val_accuracy"]
    )
    print(
        f"chosen={best['name']} acc={best['accuracy']:.4f} macro_f1={best['macro_f1']:.4f} "
        f"allagree_acc={best['allagree_accuracy']:.4f} texts_per_s={best['texts_per_s']:.0f} "
        f"train_min={best['train_min']:.1f} bench_min={(time.monotonic() - started) / 60:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Customer-service quality and latency on a held-out split of the Bitext data.

Split: stratified by intent, 20 % of ../shared/data/bitext_customer_support held out (seed 0).
The intent classifier and the answer corpus are built from the other 80 % only. Compared in
one run: retrieval-only answers, base LLM + RAG, and LoRA + RAG (when a `customer_service`
adapter exists under KGNLP_HOME/adapters).

    .venv/bin/python benchmarks/customer_service.py [--gen-queries 40] [--seed 0]

Metrics: intent accuracy; ROUGE-L F1 of the answer vs the reference response (both with the
company profile filled in, citation marks removed); grounded rate (the answer cites a document
of the right intent; also counted without the citations the pipeline attributes to answers
that cite nothing); raw-placeholder leak rate; escalation precision/recall (gold: the
contact_human_agent and complaint intents); p50/p95 time to first token and full answer.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.loading import Quantization  # noqa: E402  (a Literal: no heavy import)

CITE = re.compile(r"\s*\[\d+\]")
# a raw placeholder in either form: {{Order Number}} or [Customer Support Phone Number]
LEAK = re.compile(r"\{\{|\}\}|\[[A-Z][a-z]+(?: [A-Z][a-z]+)+\]")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_config(name: str, pipeline: Any, queries: list[dict[str, str]], profile: Any, stream: bool) -> dict:
    from rouge_score import rouge_scorer

    from apps.customer_service.pipeline import ESCALATE_INTENTS

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge, grounded, model_grounded, leaks, ttft, total = [], 0, 0, 0, [], []
    tp = fp = fn = 0
    for i, row in enumerate(queries):
        t0 = time.perf_counter()
        if stream:
            result, deltas = await pipeline.stream(f"{name}-{i}", row["instruction"])
            first = None
            async for _ in deltas:
                first = first or time.perf_counter() - t0
            ttft.append(first or time.perf_counter() - t0)
        else:
            result = await pipeline.answer(f"{name}-{i}", row["instruction"])
        total.append(time.perf_counter() - t0)
        gold_escalate = row["intent"] in ESCALATE_INTENTS
        tp += result.escalate and gold_escalate
        fp += result.escalate and not gold_escalate
        fn += gold_escalate and not result.escalate
        leaks += bool(LEAK.search(result.answer))
        if not result.escalate:
            reference = profile.fill(row["response"].replace("\r\n", "\n"))
            rouge.append(scorer.score(reference, CITE.sub("", result.answer))["rougeL"].fmeasure)
            cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
            right = any(c.citation in cited and c.intent == row["intent"] for c in result.citations)
            grounded += right
            model_grounded += right and result.cited_by != "attributed"  # cited by the LLM itself
    answered = len(rouge)
    return {
        "queries": len(queries),
        "rougeL": statistics.mean(rouge) if rouge else float("nan"),
        "grounded": grounded / max(1, answered),
        "model_grounded": model_grounded / max(1, answered),
        "leak": leaks / len(queries),
        "esc_p": tp / max(1, tp + fp),
        "esc_r": tp / max(1, tp + fn),
        "ttft_p50": pct(ttft, 0.5) if ttft else pct(total, 0.5),
        "total_p50": pct(total, 0.5),
        "total_p95": pct(total, 0.95),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "bitext_customer_support")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gen-queries", type=int, default=40, help="held-out queries for the generating configs")
    ap.add_argument("--home", type=Path, default=None, help="kgnlp home with the models (default KGNLP_HOME)")
    ap.add_argument("--quantization", default="none", choices=get_args(Quantization), help="generator quantization")
    args = ap.parse_args()
    src = args.data / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    if not src.is_file():
        print(f"skipped: {src} not found (the shared datasets are not part of a user's clone)")
        return

    from apps.customer_service.intents import IntentClassifier
    from apps.customer_service.pipeline import CustomerServicePipeline
    from apps.customer_service.profile import CompanyProfile
    from apps.customer_service.sessions import SessionStore
    from apps.customer_service.setup import DATA_DIR, sentence_encoder
    from apps.customer_service.sft_data import split_by_intent, training_corpus
    from kgnlp.files import default_home
    from models.concurrency import GenerationQueue
    from models.generation import LocalGenerator
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache
    from retrieval.corpus import as_embedder

    home = args.home or default_home()
    cache = ModelCache(home)
    with open(src, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    train, test = split_by_intent(rows, args.seed)
    t0 = time.perf_counter()
    st = load_sentence_embedder(cache.ensure("all-minilm-l6-v2"))
    encoder = sentence_encoder(st)
    clf = IntentClassifier.train(encoder, [r["instruction"] for r in train], [r["intent"] for r in train])
    preds = clf.predict_many([r["instruction"] for r in test])
    intent_acc = sum(p.intent == r["intent"] for p, r in zip(preds, test, strict=True)) / len(test)
    emb = as_embedder(st, home)
    retriever = training_corpus(train, emb)  # the same corpus the adapter's training prompts used
    print(f"built: {len(train)} train rows, {len(test)} held-out queries "
          f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
    profile = CompanyProfile.load(DATA_DIR / "company.yaml")
    rng = random.Random(args.seed)
    gen_queries = rng.sample(test, min(args.gen_queries, len(test)))
    generator = LocalGenerator.from_path(
        cache.ensure("smollm2-135m-instruct"), name="smollm2-135m-instruct", adapter_dir=home / "adapters",
        quantization=args.quantization,
    )  # fmt: skip
    queue = GenerationQueue(generator, max_concurrent=1, max_waiting=4, timeout_s=600)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = SessionStore(f"sqlite:///{tmp}/s.sqlite").open()

        def pipeline(mode: str, adapter: str | None) -> CustomerServicePipeline:
            return CustomerServicePipeline(clf, sessions, profile, retriever=retriever, generation=queue,
                                           adapter=adapter, answer_mode=mode, generation_timeout_s=600)  # type: ignore[arg-type]  # fmt: skip

        results["retrieval-only"] = asyncio.run(run_config("r", pipeline("retrieve", None), test, profile, False))
        results["retrieval-only (gen subset)"] = asyncio.run(
            run_config("rs", pipeline("retrieve", None), gen_queries, profile, False)
        )
        results["base+RAG"] = asyncio.run(run_config("b", pipeline("generate", None), gen_queries, profile, True))
        if "customer_service" in generator.adapter_names():
            results["LoRA+RAG"] = asyncio.run(
                run_config("l", pipeline("generate", "customer_service"), gen_queries, profile, True)
            )
        sessions.close()
    print(f"\nBitext held-out split (seed {args.seed}): intent accuracy {intent_acc:.3f} on {len(test)} queries")
    print("| config | queries | ROUGE-L | grounded | grounded w/o attribution | leak rate | escalation P "
          "| escalation R | TTFT p50 ms | answer p50 ms | answer p95 ms |\n" + "|---" * 11 + "|")  # fmt: skip
    for name, r in results.items():
        print(f"| {name} | {r['queries']} | {r['rougeL']:.3f} | {r['grounded']:.3f} | {r['model_grounded']:.3f} "
              f"| {r['leak']:.3f} | "
              f"{r['esc_p']:.2f} | {r['esc_r']:.2f} | {1000 * r['ttft_p50']:.0f} | {1000 * r['total_p50']:.0f} | "
              f"{1000 * r['total_p95']:.0f} |")  # fmt: skip
    if "LoRA+RAG" not in results:
        print("LoRA+RAG: no `customer_service` adapter under KGNLP_HOME/adapters (train it first)")
    cmd = f".venv/bin/python benchmarks/customer_service.py --gen-queries {args.gen_queries} --seed {args.seed}"
    cmd += f" --quantization {args.quantization}" if args.quantization != "none" else ""
    print(f"\ncommand: {cmd}")
    r = results["retrieval-only"]
    b = results["base+RAG"]
    lora = results.get("LoRA+RAG")
    print(
        f"intent_acc={intent_acc:.3f} retrieval_rougeL={r['rougeL']:.3f} base_rag_rougeL={b['rougeL']:.3f} "
        f"lora_rag_rougeL={lora['rougeL'] if lora else float('nan'):.3f} grounded={r['grounded']:.3f} "
        f"leak_rate={max(x['leak'] for x in results.values()):.3f} esc_P={r['esc_p']:.2f} esc_R={r['esc_r']:.2f} "
        f"base_rag_ttft_p50_ms={1000 * b['ttft_p50']:.0f} retrieval_answer_p50_ms={1000 * r['total_p50']:.0f}"
        + (
            f" lora_rag_ttft_p50_ms={1000 * lora['ttft_p50']:.0f} lora_grounded={lora['grounded']:.3f}"
            f" lora_model_grounded={lora['model_grounded']:.3f}"
            if lora
            else ""
        )
    )


if __name__ == "__main__":
    main()

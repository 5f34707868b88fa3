"""Customer-service quality and latency: retrieval-only vs the LLM (the default configuration).

Split: stratified by intent, 20 % of ../shared/data/bitext_customer_support held out (seed 0).
The intent classifier, the answer corpus and the adapter's training data come from the other
80 % only. Both configurations run the same pipeline; they differ only in how the answer is
written (``retrieve``: the best retrieved answer, shortened like the adapter's targets;
``generate``: the service's generator with the ``customer_service`` adapter, on the engine the
service would pick on this CPU).

    .venv/bin/python benchmarks/customer_service.py [--gen-queries 40] [--dialogues 48] [--seed 0]

Single turn (held-out queries): intent accuracy; ROUGE-L F1 against the reference shortened by
the same rule as the answers (``concise``: "at the shorter length"), citation marks removed;
raw-placeholder leak rate; p50/p95 of the non-streamed answer time; p50 time to first token.

Multi-turn (``benchmarks/cs_dialogues.py``: slot fills, follow-ups, intent switches, requests
for a human), per turn after the first: intent accuracy; slot capture (the turn's value is among
the slots the answer reports for the turn); slot use (the answer names it); wrong escalations
(handed over when no hand-over was due); self-grounded (the answer cites, by itself, a source of
the turn's intent; citations the pipeline attributes to uncited answers do not count).

Speed: decode tokens/s with and without the adapter on the same prompts (``adapter_speed_ratio``).
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CITE = re.compile(r"\s*\[\d+\]")
# a raw placeholder in either form: {{Order Number}} or [Customer Support Phone Number]
LEAK = re.compile(r"\{\{|\}\}|\[[A-Z][a-z]+(?: [A-Z][a-z]+)+\]")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def self_cited(result: Any, intent: str) -> bool:
    """The answer cites, itself, a source of ``intent``."""
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
    right = any(c.citation in cited and c.intent == intent for c in result.citations)
    return right and result.cited_by != "attributed"


async def single_turn(name: str, pipeline: Any, queries: list[dict[str, str]], stream_n: int) -> dict[str, Any]:
    from rouge_score import rouge_scorer

    from apps.customer_service.concise import concise
    from apps.customer_service.sessions import LOCAL

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge, leaks, total, ttft, grounded, answered, fallbacks = [], 0, [], [], 0, 0, 0
    for i, row in enumerate(queries):
        t0 = time.perf_counter()
        result = await pipeline.answer(f"{name}-s{i}", row["instruction"], owner=LOCAL)
        total.append(time.perf_counter() - t0)
        leaks += bool(LEAK.search(result.answer))
        fallbacks += result.fallback
        if not result.escalate:
            answered += 1
            reference = concise(pipeline.profile.fill(row["response"].replace("\r\n", "\n")))
            rouge.append(scorer.score(reference, CITE.sub("", result.answer))["rougeL"].fmeasure)
            grounded += self_cited(result, row["intent"])
    for i, row in enumerate(queries[:stream_n]):
        t0 = time.perf_counter()
        _, deltas = await pipeline.stream(f"{name}-t{i}", row["instruction"], owner=LOCAL)
        first = None
        async for d in deltas:
            if first is None and d.strip():
                first = time.perf_counter() - t0
        ttft.append(first if first is not None else time.perf_counter() - t0)
    return {
        "queries": len(queries),
        "rougeL": statistics.mean(rouge) if rouge else float("nan"),
        "self_grounded": grounded / max(1, answered),
        "leak": leaks / len(queries),
        "fallbacks": fallbacks,
        "p50": pct(total, 0.5),
        "p95": pct(total, 0.95),
        "ttft_p50": pct(ttft, 0.5),
    }


async def multi_turn(name: str, pipeline: Any, dialogues: list[Any]) -> dict[str, Any]:
    from apps.customer_service.sessions import LOCAL

    intent_ok = slot_ok = slot_used = slot_turns = use_turns = wrong_esc = missed_esc = 0
    later = grounded = answered = generated = 0
    by_kind: dict[str, list[int]] = {}
    for i, d in enumerate(dialogues):
        session = f"{name}-d{i}"
        for j, turn in enumerate(d.turns):
            result = await pipeline.answer(session, turn.message, owner=LOCAL)
            if j == 0:
                continue
            later += 1
            ok = result.intent == turn.intent or (turn.escalate and result.escalate)
            intent_ok += ok
            by_kind.setdefault(d.kind, [0, 0])
            by_kind[d.kind][0] += ok
            by_kind[d.kind][1] += 1
            wrong_esc += result.escalate and not turn.escalate
            missed_esc += turn.escalate and not result.escalate
            if turn.slot:
                slot_turns += 1
                key, value = turn.slot
                slot_ok += result.slots.get(key) == value
                if not result.escalate:
                    use_turns += 1
                    slot_used += value in result.answer
            if not result.escalate and not turn.escalate:
                answered += 1
                grounded += self_cited(result, turn.intent)
                generated += result.mode == "generated"
    return {
        "dialogues": len(dialogues),
        "turns": later,
        "followup_intent": intent_ok / max(1, later),
        "slot_capture": slot_ok / max(1, slot_turns),
        "slot_use": slot_used / max(1, use_turns),
        "wrong_escalations": wrong_esc,
        "missed_escalations": missed_esc,
        "self_grounded": grounded / max(1, answered),
        "generated": generated / max(1, answered),
        "by_kind": {k: round(v[0] / v[1], 3) for k, v in sorted(by_kind.items())},
    }


def adapter_speed(generator: Any, prompts: list[Any], adapter: str, tokens: int = 64) -> tuple[float, float]:
    """Decode tokens/s over ``prompts`` without and with ``adapter`` (greedy, same prompts)."""
    from models.generation import GenerationParams

    rates = []
    for a in (None, adapter):
        generator.generate(prompts[0], GenerationParams(max_tokens=8), a)  # warm-up (opens the adapter)
        n, seconds = 0, 0.0
        for p in prompts:
            t0 = time.perf_counter()
            out = generator.generate(p, GenerationParams(max_tokens=tokens), a)
            seconds += time.perf_counter() - t0
            n += out.completion_tokens
        rates.append(n / seconds)
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "bitext_customer_support")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gen-queries", type=int, default=40, help="held-out single-turn queries")
    ap.add_argument("--stream-queries", type=int, default=12, help="of those, how many are also streamed (TTFT)")
    ap.add_argument("--dialogues", type=int, default=48, help="multi-turn dialogues (>= 40)")
    ap.add_argument("--home", type=Path, default=None, help="kgnlp home with the models (default KGNLP_HOME)")
    ap.add_argument("--engine", default="auto", choices=("auto", "llama.cpp", "torch"))
    ap.add_argument("--citation-bias", type=float, default=None, help="default: the service's setting")
    ap.add_argument("--split", default="test", choices=("test", "validation"),
                    help="validation: queries and dialogues from the training part (for choosing settings); "
                    "test: the held-out part (report these, once)")  # fmt: skip
    args = ap.parse_args()
    src = args.data / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    if not src.is_file():
        print(f"skipped: {src} not found (the shared datasets are not part of a user's clone)")
        return

    from apps.core.services import load_generator
    from apps.core.settings import load_settings
    from apps.customer_service.intents import IntentClassifier
    from apps.customer_service.pipeline import CustomerServicePipeline
    from apps.customer_service.profile import CompanyProfile
    from apps.customer_service.sessions import SessionStore
    from apps.customer_service.setup import DATA_DIR, sentence_encoder
    from apps.customer_service.sft_data import split_by_intent, training_corpus
    from benchmarks.cs_dialogues import build_dialogues
    from kgnlp.cpu import cpu_key
    from kgnlp.files import default_home
    from models.concurrency import GenerationQueue
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
    clf = IntentClassifier.train(sentence_encoder(st), [r["instruction"] for r in train], [r["intent"] for r in train])
    preds = clf.predict_many([r["instruction"] for r in test])
    intent_acc = sum(p.intent == r["intent"] for p, r in zip(preds, test, strict=True)) / len(test)
    retriever = training_corpus(train, as_embedder(st, home))  # the corpus the adapter's prompts used
    settings = load_settings(home=home, models={"engine": args.engine})
    bias = settings.customer_service.citation_bias if args.citation_bias is None else args.citation_bias
    generator, detail = load_generator(settings, cache)
    print(f"built in {time.perf_counter() - t0:.0f} s: {len(train)} train rows, {len(test)} held out; generator "
          f"{detail['engine']} {detail['quantization']}, adapters {detail['adapters']}", file=sys.stderr)  # fmt: skip
    adapter = "customer_service" if "customer_service" in generator.adapter_names() else None
    profile = CompanyProfile.load(DATA_DIR / "company.yaml")
    rng = random.Random(args.seed)
    pool = test if args.split == "test" else train
    queries = rng.sample(pool, min(args.gen_queries, len(pool)))
    dialogues = build_dialogues(pool, args.dialogues, args.seed)
    queue = GenerationQueue(generator, max_concurrent=1, max_waiting=4, timeout_s=600)
    single: dict[str, dict] = {}
    multi: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = SessionStore(f"sqlite:///{tmp}/s.sqlite").open()
        for name, mode in (("retrieval-only", "retrieve"), ("LLM (default)", "auto")):
            pipeline = CustomerServicePipeline(clf, sessions, profile, retriever=retriever, generation=queue,
                                               adapter="customer_service", answer_mode=mode,  # type: ignore[arg-type]
                                               citation_bias=bias)  # fmt: skip
            single[name] = asyncio.run(single_turn(name, pipeline, queries, args.stream_queries))
            multi[name] = asyncio.run(multi_turn(name, pipeline, dialogues))
            print(f"{name}: done", file=sys.stderr)
        from apps.customer_service.pipeline import render_prompt

        prompts = [render_prompt(profile, q["instruction"], retriever.retrieve(q["instruction"], 3, "hybrid"), {},
                                 source_chars=300) for q in queries[:6]]  # fmt: skip
        sessions.close()
    base_rate, adapter_rate = adapter_speed(generator, prompts, adapter) if adapter else (float("nan"),) * 2
    print(f"\nCPU: {cpu_key()}; generator: {detail['engine']} ({detail['quantization']}), adapter: {adapter}")
    print(f"Bitext split (seed {args.seed}): intent accuracy {intent_acc:.3f} on {len(test)} held-out queries; "
          f"queries and dialogues below from the {args.split} part")  # fmt: skip
    print("\nSingle turn (held-out queries)\n| config | queries | ROUGE-L (short refs) | self-grounded | leak "
          "| fallbacks | answer p50 s | answer p95 s | TTFT p50 ms |\n" + "|---" * 9 + "|")  # fmt: skip
    for name, r in single.items():
        print(f"| {name} | {r['queries']} | {r['rougeL']:.3f} | {r['self_grounded']:.3f} | {r['leak']:.3f} "
              f"| {r['fallbacks']} | {r['p50']:.2f} | {r['p95']:.2f} | {1000 * r['ttft_p50']:.0f} |")  # fmt: skip
    print("\nMulti-turn (turns after the first)\n| config | dialogues | turns | intent | slot capture | slot use "
          "| wrong escalations | missed escalations | self-grounded | by the LLM | intent by kind |")  # fmt: skip
    print("|---" * 11 + "|")
    for name, r in multi.items():
        print(f"| {name} | {r['dialogues']} | {r['turns']} | {r['followup_intent']:.3f} | {r['slot_capture']:.3f} "
              f"| {r['slot_use']:.3f} | {r['wrong_escalations']} | {r['missed_escalations']} "
              f"| {r['self_grounded']:.3f} | {r['generated']:.3f} | {r['by_kind']} |")  # fmt: skip
    print(f"\nDecode with/without the adapter: {adapter_rate:.1f} / {base_rate:.1f} tok/s")
    cmd = f".venv/bin/python benchmarks/customer_service.py --gen-queries {args.gen_queries} "
    cmd += f"--dialogues {args.dialogues} --seed {args.seed} --split {args.split}"
    cmd += f" --engine {args.engine}" if args.engine != "auto" else ""
    cmd += f" --citation-bias {args.citation_bias}" if args.citation_bias is not None else ""
    print(f"command: {cmd}")
    r, llm, m = single["retrieval-only"], single["LLM (default)"], multi["LLM (default)"]
    print(
        f"followup_intent={m['followup_intent']:.3f} slot_capture={m['slot_capture']:.3f} slot_use={m['slot_use']:.3f} "
        f"wrong_escalations={m['wrong_escalations']} self_grounded={m['self_grounded']:.3f} "
        f"rouge_l={llm['rougeL']:.3f} retrieval_rouge_l={r['rougeL']:.3f} p50_s={llm['p50']:.2f} "
        f"p95_s={llm['p95']:.2f} ttft_ms={1000 * llm['ttft_p50']:.0f} "
        f"adapter_speed_ratio={adapter_rate / base_rate:.2f} intent_acc={intent_acc:.3f} engine={detail['engine']} "
        f"citation_bias={bias}"
    )


if __name__ == "__main__":
    main()

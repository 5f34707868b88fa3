"""Retrieval-aware SFT data for the ``customer_service`` LoRA adapter (``data/retail/cs_sft.yaml``).

Only the training part of the Bitext split is used — the split that ``benchmarks/customer_service.py``
evaluates on (stratified by intent, 20 % held out, seed 0) — as the answer corpus and as examples.
Each example's prompt is what the pipeline shows at serve time (``render_prompt``: system prompt,
numbered sources, delimiters), with sources retrieved from that corpus the way the pipeline
retrieves them, minus the example's own response: at serve time the right answer is never in
the corpus word for word, so the adapter must learn to write from near matches and cite them.
The target is the reference response with the company profile filled in, citing the first
source of the right intent right after its opening sentence: answers are long and are often cut
by the token limit at serve time, so a citation kept for the end would rarely be seen.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from apps.customer_service.pipeline import ESCALATE_INTENTS, render_prompt
from apps.customer_service.profile import CompanyProfile
from apps.customer_service.setup import DATA_DIR, read_bitext_rows
from apps.customer_service.slots import extract_slots

__all__ = ["build", "split_by_intent", "training_corpus"]

SOURCE = DATA_DIR / "bitext_customer_support.csv"


def split_by_intent(rows: list[dict[str, str]], seed: int = 0, test_fraction: float = 0.2) -> tuple[list, list]:
    """Stratified by intent: ``(train, held_out)`` with ``test_fraction`` of each intent's shuffled
    rows held out (the split of benchmarks/customer_service.py and benchmarks/retrieval.py)."""
    by_intent = _group_by_intent(rows)
    rng = random.Random(seed)
    train, test = [], []
    for intent in sorted(by_intent):
        items = by_intent[intent][:]
        rng.shuffle(items)
        cut = max(1, round(len(items) * test_fraction))
        test += items[:cut]
        train += items[cut:]
    return train, test


def _group_by_intent(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    by_intent: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_intent[r["intent"]].append(r)
    return by_intent


def response_text(row: dict[str, str]) -> str:
    return row["response"].replace("\r\n", "\n").strip()


def training_corpus(train: list[dict[str, str]], embedder: Any) -> Any:
    """A retriever over the unique responses of ``train`` (documents keep intent and category)."""
    from retrieval.corpus import Corpus
    from retrieval.types import Document

    seen: set[str] = set()
    docs = []
    for i, r in enumerate(train):
        text = response_text(r)
        if text not in seen:
            seen.add(text)
            docs.append(Document(f"train:{i}", text, metadata={"intent": r["intent"], "category": r["category"]}))
    return Corpus.build("bitext-train", docs, embedder).retriever(embedder)


_SENTENCE_END = re.compile(r"(?<![\d\s])[.!?](?=\s|$)")  # not "1." of a list


def cite_early(answer: str, citation: int, min_chars: int = 40) -> str:
    """``answer`` with `` [citation]`` before the end mark of its first sentence that ends at or
    after ``min_chars`` (so not after a bare "I'm on it!"), or at the end when there is none."""
    for m in _SENTENCE_END.finditer(answer):
        if m.start() >= min_chars:
            return f"{answer[: m.start()]} [{citation}]{answer[m.start() :]}"
    return f"{answer} [{citation}]"


def make_examples(
    rows: list[dict[str, str]],
    retriever: Any,
    profile: CompanyProfile,
    k: int = 3,
    source_chars: int | None = 400,
) -> list[dict[str, Any]]:
    """One chat example per row (hand-off intents are answered by the pipeline, not the adapter)."""
    examples = []
    for row in rows:
        if row["intent"] in ESCALATE_INTENTS:
            continue
        message, own = row["instruction"].strip(), response_text(row)
        # `not in`: a long response is indexed in chunks, none of which may be shown
        hits = retriever.retrieve(message, k * 3 + 1, "hybrid")
        hits = [e for e in hits if e.kind == "passage" and e.text not in own]
        same = [e for e in hits if e.metadata.get("intent") == row["intent"]]
        evidence = (same + [e for e in hits if e not in same])[:k]
        for i, e in enumerate(evidence, 1):
            e.citation = i
        slots = extract_slots(message)
        prompt = render_prompt(profile, message, evidence, slots, source_chars=source_chars)
        cite = next((e.citation for e in evidence if e.metadata.get("intent") == row["intent"]), None)
        answer = profile.fill(own, slots)
        answer = cite_early(answer, cite) if cite else answer
        messages = [{"role": m.role, "content": m.content} for m in prompt]
        examples.append({"messages": [*messages, {"role": "assistant", "content": answer}], "intent": row["intent"]})
    return examples


def build(cfg: Any, per_intent: int = 24, val_per_intent: int = 2, seed: int = 0) -> None:
    """The ``data.prepare`` hook of ``cs_sft.yaml``: write ``data.train`` and ``data.validation``.

    ``per_intent`` training and ``val_per_intent`` validation rows per intent are sampled from
    the training split (validation rows are not training rows).
    """
    from kgnlp.files import atomic_write_text, default_home
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache
    from retrieval.corpus import as_embedder

    home = default_home()
    st = load_sentence_embedder(ModelCache(home).ensure("all-minilm-l6-v2"))
    embedder = as_embedder(st, home)
    train, _ = split_by_intent(read_bitext_rows(SOURCE), seed)
    retriever = training_corpus(train, embedder)
    profile = CompanyProfile.load(DATA_DIR / "company.yaml")
    by_intent = _group_by_intent(train)
    rng = random.Random(seed)
    picked_train, picked_val = [], []
    for intent in sorted(by_intent):
        rows = rng.sample(by_intent[intent], min(len(by_intent[intent]), per_intent + val_per_intent))
        picked_val += rows[:val_per_intent]
        picked_train += rows[val_per_intent:]
    rng.shuffle(picked_train)
    for path, rows in ((cfg.data.train, picked_train), (cfg.data.validation, picked_val)):
        if path is None:
            continue
        examples = make_examples(rows, retriever, profile)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(path), "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))

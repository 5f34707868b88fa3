"""Retrieval-aware SFT data for the ``customer_service`` LoRA adapter (``data/retail/cs_sft.yaml``).

Only the training part of the Bitext split is used — the split that ``benchmarks/customer_service.py``
evaluates on (stratified by intent, 20 % held out, seed 0) — as the answer corpus and as examples.
Each example's prompt is what the pipeline shows at serve time (``render_prompt``: system prompt,
numbered sources, delimiters), with sources retrieved from that corpus the way the pipeline
retrieves them, minus the example's own response: at serve time the right answer is never in
the corpus word for word, so the adapter must learn to write from near matches and cite them.
The target is the reference response shortened by ``concise`` (its opening sentence and first
steps, ~300 characters: the adapter learns the length of a chat answer from its targets) with
the company profile filled in, citing the first source of the right intent right after its
opening sentence. A share of the examples are second turns (see ``make_examples``), so the
adapter reads the conversation and the details block the pipeline shows.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from apps.customer_service.concise import concise
from apps.customer_service.pipeline import ESCALATE_INTENTS, render_prompt
from apps.customer_service.profile import CompanyProfile
from apps.customer_service.setup import DATA_DIR, read_bitext_rows
from apps.customer_service.slots import extract_slots
from models.generation import ChatMessage

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


# a customer turn that only supplies the id the open intent asks for
_ID_TURNS = {
    "order_id": ("it's {v}", "order number is {v}", "{v}", "#{v}", "the order id is {v}", "sure, {v}", "here: {v}"),
    "invoice_id": ("it's {v}", "invoice number {v}", "{v}", "the number is {v}", "#{v}"),
}
_EMAIL_TURNS = ("my email is {v}", "{v}", "you can reach me at {v}")
_NAMES = ("ana", "li.wei", "j.smith", "maria.g", "tom", "sam.k", "nora", "omar")


def synthetic_id(kind: str, rng: random.Random) -> str:
    """An order or invoice reference in one of the shapes customers type (ORD-55123, A77-10293, …)."""
    digits = "".join(rng.choice("0123456789") for _ in range(5))
    if kind == "invoice_id":
        return rng.choice((f"INV-{digits}", f"INV-2026-{digits[:3]}", f"{digits}{rng.randint(10, 99)}"))
    letter = rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
    return rng.choice(
        (f"ORD-{digits}", f"{letter}{rng.randint(10, 99)}-{digits}", f"{digits}-{rng.randint(1000, 9999)}")
    )


def _evidence(retriever: Any, query: str, intent: str, own: str, k: int) -> list[Any]:
    # `not in`: a long response is indexed in chunks, none of which may be shown
    hits = retriever.retrieve(query, k * 3 + 1, "hybrid")
    hits = [e for e in hits if e.kind == "passage" and e.text not in own]
    same = [e for e in hits if e.metadata.get("intent") == intent]
    evidence = (same + [e for e in hits if e not in same])[:k]
    for i, e in enumerate(evidence, 1):
        e.citation = i
    return evidence


def _example(
    profile: CompanyProfile,
    row: dict[str, str],
    message: str,
    query: str,
    slots: dict[str, str],
    retriever: Any,
    history: list[ChatMessage],
    k: int,
    source_chars: int,
    answer_chars: int,
) -> dict[str, Any]:
    own = response_text(row)
    evidence = _evidence(retriever, query, row["intent"], own, k)
    prompt = render_prompt(profile, message, evidence, slots, history, source_chars=source_chars)
    cite = next((e.citation for e in evidence if e.metadata.get("intent") == row["intent"]), None)
    answer = concise(profile.fill(own, slots), answer_chars)
    answer = cite_early(answer, cite) if cite else answer
    messages = [{"role": m.role, "content": m.content} for m in prompt]
    return {"messages": [*messages, {"role": "assistant", "content": answer}], "intent": row["intent"]}


def make_examples(
    rows: list[dict[str, str]],
    retriever: Any,
    profile: CompanyProfile,
    k: int = 3,
    source_chars: int = 300,
    answer_chars: int = 300,
    pool: list[dict[str, str]] | None = None,
    multi_turn: float = 0.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Chat examples: one per row (hand-off intents are answered by the pipeline, not the adapter),
    the target its reference answer shortened by ``concise`` and citing its source early.

    With ``multi_turn`` > 0, that share of the rows also gives a second-turn example: for intents
    about an order or invoice, an earlier turn of the same intent without the id and a current
    turn that only gives it ("it's ORD-55123"; the pipeline continues the open intent and
    retrieves with both messages); for the others, an earlier exchange about another intent
    (taken from ``pool``) that the answer must not follow.
    """
    from apps.customer_service.dialogue import ID_SLOT_OF_INTENT

    rng = random.Random(seed)
    pool = pool or rows
    by_intent = _group_by_intent([r for r in pool if r["intent"] not in ESCALATE_INTENTS])
    examples = []
    for row in rows:
        if row["intent"] in ESCALATE_INTENTS:
            continue
        message = row["instruction"].strip()
        slots = extract_slots(message)
        examples.append(_example(profile, row, message, message, slots, retriever, [], k, source_chars, answer_chars))
        if rng.random() >= multi_turn:
            continue
        kind = ID_SLOT_OF_INTENT.get(row["intent"])
        if kind:  # slot fill: the id comes in a turn of its own
            before = [r for r in by_intent[row["intent"]] if not extract_slots(r["instruction"])] or [row]
            first = rng.choice(before)
            value = synthetic_id(kind, rng)
            if rng.random() < 0.2:
                kind, value = "email", f"{rng.choice(_NAMES)}@example.com"
                message = rng.choice(_EMAIL_TURNS).format(v=value)
            else:
                message = rng.choice(_ID_TURNS[kind]).format(v=value)
            query = f"{first['instruction'].strip()} {message}"
        else:  # follow-up or switch: an earlier exchange about something else
            other = rng.choice([i for i in by_intent if i != row["intent"]])
            first = rng.choice(by_intent[other])
            message, query, kind, value = row["instruction"].strip(), row["instruction"].strip(), "", ""
        history = [
            ChatMessage("user", first["instruction"].strip()),
            ChatMessage("assistant", concise(profile.fill(response_text(first)), answer_chars)),
        ]
        slots = {**extract_slots(first["instruction"]), **extract_slots(message)}
        if kind and value:
            slots[kind] = value
        examples.append(
            _example(profile, row, message, query, slots, retriever, history, k, source_chars, answer_chars)
        )
    return examples


def build(cfg: Any, per_intent: int = 10, val_per_intent: int = 1, multi_turn: float = 0.45, seed: int = 0) -> None:
    """The ``data.prepare`` hook of ``cs_sft.yaml``: write ``data.train`` and ``data.validation``.

    ``per_intent`` training and ``val_per_intent`` validation rows per intent are sampled from
    the training split (validation rows are not training rows); ``multi_turn`` of them also
    give a second-turn example (see ``make_examples``).
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
        examples = make_examples(rows, retriever, profile, pool=train, multi_turn=multi_turn, seed=seed)
        random.Random(seed).shuffle(examples)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(path), "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))

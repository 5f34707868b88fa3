"""Retrieval-aware SFT data for the customer_service adapter, on real Bitext rows and a real index."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from apps.customer_service.concise import concise
from apps.customer_service.pipeline import ESCALATE_INTENTS, render_prompt
from apps.customer_service.profile import CompanyProfile
from apps.customer_service.setup import DATA_DIR, read_bitext_rows
from apps.customer_service.sft_data import (
    SOURCE,
    cite_early,
    make_examples,
    response_text,
    split_by_intent,
    training_corpus,
)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return read_bitext_rows(SOURCE)


def test_split_is_stratified_disjoint_and_stable(rows: list[dict[str, str]]) -> None:
    train, test = split_by_intent(rows, seed=0)
    assert len(train) + len(test) == len(rows)
    assert not {id(r) for r in train} & {id(r) for r in test}
    per_intent = Counter(r["intent"] for r in rows)
    held = Counter(r["intent"] for r in test)
    assert set(held) == set(per_intent)
    assert all(abs(held[i] - 0.2 * per_intent[i]) <= 1 for i in per_intent)
    assert [r["instruction"] for r in split_by_intent(rows, seed=0)[1][:5]] == [r["instruction"] for r in test[:5]]


def test_examples_are_the_served_prompt_without_their_own_answer(
    rows: list[dict[str, str]], embedder_path: Path
) -> None:
    from models.loading import load_sentence_embedder
    from retrieval.corpus import as_embedder

    train, _ = split_by_intent(rows, seed=0)
    sample = [r for r in train if r["intent"] in ("track_order", "get_refund", "complaint")][:300]
    retriever = training_corpus(sample, as_embedder(load_sentence_embedder(embedder_path)))
    profile = CompanyProfile.load(DATA_DIR / "company.yaml")
    answered = [r for r in sample if r["intent"] != "complaint"][:12]
    picked = answered + [r for r in sample if r["intent"] == "complaint"][:2]
    examples = make_examples(picked, retriever, profile, k=3, source_chars=300)
    assert len(examples) == 12  # hand-off intents are answered by the pipeline, not by the adapter
    assert not {e["intent"] for e in examples} & ESCALATE_INTENTS
    for row, ex in zip(picked, examples, strict=False):
        system, user, answer = ex["messages"]
        assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant"]
        expected = render_prompt(profile, row["instruction"].strip(), [], {}, source_chars=300)
        assert system["content"] == expected[0].content
        assert user["content"].startswith("<sources>\n[1] ") and user["content"].endswith(
            f"<customer>\n{row['instruction'].strip()}\n</customer>"
        )
        sources = re.findall(r"^\[(\d)\] (.*)$", user["content"], re.M)
        assert [n for n, _ in sources] == ["1", "2", "3"]
        own = profile.fill(response_text(row), {})
        assert all(own[:120] not in text for _, text in sources)  # its own answer is never a source
        assert "{{" not in user["content"] and "{{" not in answer["content"]
        # a chat-length answer: the reference's opening, citing a source of its intent once, early
        (cited,) = re.findall(r" \[([123])\]", answer["content"])
        assert answer["content"] == cite_early(concise(own, 300), int(cited))
        assert len(answer["content"]) <= 610 and all(len(text) <= 610 for _, text in sources)


def test_second_turn_examples_show_the_conversation_and_the_details(
    rows: list[dict[str, str]], embedder_path: Path
) -> None:
    from models.loading import load_sentence_embedder
    from retrieval.corpus import as_embedder

    train, _ = split_by_intent(rows, seed=0)
    sample = [r for r in train if r["intent"] in ("cancel_order", "get_refund", "review")][:300]
    retriever = training_corpus(sample, as_embedder(load_sentence_embedder(embedder_path)))
    profile = CompanyProfile.load(DATA_DIR / "company.yaml")
    picked = [r for r in sample if r["intent"] == "cancel_order"][:6] + [r for r in sample if r["intent"] == "review"][
        :4
    ]
    examples = make_examples(picked, retriever, profile, pool=sample, multi_turn=1.0, seed=3)
    assert len(examples) == 20  # each row: its own turn and a second turn
    second = [e for e in examples if "<conversation>" in e["messages"][1]["content"]]
    assert len(second) == 10
    for ex in second:
        user = ex["messages"][1]["content"]
        said = re.search(r"<customer>\n(.*)\n</customer>", user, re.S).group(1)  # type: ignore[union-attr]
        if ex["intent"] == "cancel_order":  # the id comes in a turn of its own, and is in the details
            assert "<details>" in user and ("order number: " in user or "email: " in user)
            assert len(said) < 60
        assert user.index("<sources>") < user.index("<conversation>") < user.index("<customer>")


def test_cite_early_marks_the_first_full_sentence() -> None:
    assert cite_early("I'm on it! I see that you want to track your order. Go to Orders.", 2) == (
        "I'm on it! I see that you want to track your order [2]. Go to Orders."
    )
    # list numbers are not sentence ends; an answer without a sentence end is cited at its end
    assert cite_early("Please follow these steps to get your refund:\n1. Sign in.", 1) == (
        "Please follow these steps to get your refund:\n1. Sign in [1]."
    )
    assert cite_early("Short answer", 3) == "Short answer [3]"

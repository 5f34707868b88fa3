"""Retrieval-aware SFT data for the customer_service adapter, on real Bitext rows and a real index."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

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
    examples = make_examples(picked, retriever, profile, k=3, source_chars=400)
    assert len(examples) == 12  # hand-off intents are answered by the pipeline, not by the adapter
    assert not {e["intent"] for e in examples} & ESCALATE_INTENTS
    for row, ex in zip(picked, examples, strict=False):
        system, user, answer = ex["messages"]
        assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant"]
        expected = render_prompt(profile, row["instruction"].strip(), [], {}, source_chars=400)
        assert system["content"] == expected[0].content
        assert user["content"].startswith("<sources>\n[1] ") and user["content"].endswith(
            f"<customer>\n{row['instruction'].strip()}\n</customer>"
        )
        sources = re.findall(r"^\[(\d)\] (.*)$", user["content"], re.M)
        assert [n for n, _ in sources] == ["1", "2", "3"]
        own = profile.fill(response_text(row), {})
        assert all(own[:120] not in text for _, text in sources)  # its own answer is never a source
        assert "{{" not in user["content"] and "{{" not in answer["content"]
        # cites a source of its intent at the end of its first sentence, once
        (cited,) = re.findall(r" \[([123])\]", answer["content"])
        assert answer["content"] == cite_early(own, int(cited))


def test_cite_early_marks_the_first_full_sentence() -> None:
    assert cite_early("I'm on it! I see that you want to track your order. Go to Orders.", 2) == (
        "I'm on it! I see that you want to track your order [2]. Go to Orders."
    )
    # list numbers are not sentence ends; an answer without a sentence end is cited at its end
    assert cite_early("Please follow these steps to get your refund:\n1. Sign in.", 1) == (
        "Please follow these steps to get your refund:\n1. Sign in [1]."
    )
    assert cite_early("Short answer", 3) == "Short answer [3]"

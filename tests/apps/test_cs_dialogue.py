"""Dialogue state, slots and concise answers of the customer-service app (real intent classifier)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from apps.customer_service.concise import concise, segments
from apps.customer_service.dialogue import understand
from apps.customer_service.pipeline import confirm_details, plain_text
from apps.customer_service.sessions import Turn
from apps.customer_service.setup import DATA_DIR, read_bitext_rows
from apps.customer_service.slots import extract_slots, is_slot_only


@pytest.mark.parametrize(
    ("text", "expecting", "expected"),
    [
        ("it's ORD-55123", "order_id", {"order_id": "ORD-55123"}),
        ("#A77-10293", "order_id", {"order_id": "A77-10293"}),
        ("sure, it's INV-20931", "invoice_id", {"invoice_id": "INV-20931"}),
        ("4481-2290", "invoice_id", {"invoice_id": "4481-2290"}),
        ("my email is jane.doe@example.com", None, {"email": "jane.doe@example.com"}),
        ("the new one should be in Denver", None, {"delivery_city": "Denver"}),
        ("call me in 2024 about $45", None, {"refund_amount": "$45"}),  # a year is no id
        ("order    number   is   ORD-1234567", None, {"order_id": "ORD-1234567"}),  # whitespace runs
    ],
)
def test_slots_in_turns_that_only_give_a_detail(text: str, expecting: str | None, expected: dict[str, str]) -> None:
    assert extract_slots(text, expecting) == expected


@pytest.mark.parametrize(
    ("text", "only"),
    [
        ("it's ORD-55123", True),
        ("my email is ana@example.org", True),
        ("the new one should be in Denver", True),
        ("where is my order #ORD-77812?", False),
        ("I want a refund for order ORD-1234 because it arrived broken", False),
        ("hello", False),  # no slot at all
    ],
)
def test_slot_only_turns(text: str, only: bool) -> None:
    assert is_slot_only(text, extract_slots(text)) is only


HOSTILE = [
    "order" + " " * 31_990 + "!",
    "invoice" + "\t \n" * 10_000 + "#",
    "a" * 32_000,
    "1," * 16_000,
    "." * 32_000,
    "{{" * 16_000,
    "%a" * 16_000,
    "ORD-" * 8_000,
    "x@" * 16_000,
    "$1" * 16_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:12]))
def test_slot_patterns_are_linear_on_hostile_input(text: str) -> None:
    """At the OpenAI message cap (32,000 characters) every pattern finishes in well under a second
    (before, "order" + 1,500 spaces + "!" took 15 s: adjacent ``\\s*`` backtrack cubically)."""
    from apps.customer_service.profile import CompanyProfile

    t0 = time.perf_counter()
    extract_slots(text, "order_id")
    is_slot_only(text, {"order_id": "x"})
    CompanyProfile.load(DATA_DIR / "company.yaml").fill(text)
    plain_text(text)
    assert time.perf_counter() - t0 < 1.0


def test_concise_keeps_whole_sentences_and_steps() -> None:
    rows = read_bitext_rows(DATA_DIR / "bitext_customer_support.csv")[:400]
    for row in rows:
        short = concise(row["response"], 300)
        assert short and len(short) <= 600
        if not short.endswith("…"):  # whole sentences and steps of the answer, nothing cut or made up
            assert set(segments(short)) <= set(segments(row["response"])), short
        assert not short.rstrip().endswith(":")  # an announcement of steps that are not there
    long = "I understand. Here's how:\n\n1. Log in.\n2. Open Orders.\n3. Click Cancel.\n\n" + "More text. " * 40
    assert concise(long, 40) == "I understand.\n1. Log in.\n2. Open Orders."


def test_markup_is_removed_from_what_the_customer_reads() -> None:
    raw = '<script> document.write("x") </script><h1>Track Your Order</h1> <p>Open ```Orders``` [1].</p>'
    assert plain_text(raw) == "Track Your Order Open Orders [1]."


@pytest.mark.parametrize("size", [3, 7, 50])
def test_streamed_markup_never_reaches_the_customer_whatever_the_delta_size(size: int) -> None:
    from apps.customer_service.pipeline import _split_at_open_markup

    raw = 'Open Orders.<script> document.write("<h1>x") </script> <b>Then</b> <style>p{}</style>cancel. <script>var a'
    sent, pending = [], ""
    for i in range(0, len(raw), size):
        ready, pending = _split_at_open_markup(pending + raw[i : i + size])
        sent.append(plain_text(ready, strip=False))
    sent.append(plain_text(pending, strip=False))
    text = " ".join("".join(sent).split())
    assert text == "Open Orders. Then cancel.", text


def test_details_given_in_a_turn_are_confirmed_unless_the_answer_names_them() -> None:
    assert confirm_details("You can cancel it in Orders.", {"order_id": "ORD-1"}).startswith(
        "Thanks, I have your order number ORD-1."
    )
    assert confirm_details("Order ORD-1 is cancelled.", {"order_id": "ORD-1"}) == "Order ORD-1 is cancelled."
    assert confirm_details("Done.", {"person_name": "Ana"}) == "Done."  # names are not read back


@pytest.fixture(scope="module")
def classifier(model_home: Path) -> Any:
    from apps.customer_service.setup import load_intents, train_intents
    from models.loading import load_sentence_embedder

    embedder = load_sentence_embedder(model_home / "models" / "all-minilm-l6-v2")
    train_intents(model_home, embedder)
    return load_intents(model_home, embedder)


def _turns(*pairs: tuple[str, str]) -> list[Turn]:
    out = []
    for message, intent in pairs:
        out += [Turn("user", message, intent), Turn("assistant", "…", intent)]
    return out


def test_a_turn_that_only_gives_the_id_continues_the_open_intent(classifier: Any) -> None:
    history = _turns(("I want to cancel my order", "cancel_order"))
    alone = classifier.predict("it's ORD-55123")
    turn = understand(classifier, history, "it's ORD-55123")
    assert turn.continued and turn.intent == "cancel_order" and turn.slots == {"order_id": "ORD-55123"}
    assert "cancel my order" in turn.query  # retrieval sees what the id is for
    assert alone.intent != "cancel_order" or alone.confidence < 0.5  # what classification alone gave
    invoice = understand(classifier, _turns(("I need a copy of my invoice", "get_invoice")), "#A77-10293")
    assert invoice.intent == "get_invoice" and invoice.slots == {"invoice_id": "A77-10293"}


def test_follow_ups_and_switches_are_classified_with_the_conversation_in_view(classifier: Any) -> None:
    history = _turns(("where is my package?", "track_order"))
    assert understand(classifier, history, "and how long does delivery take?").intent == "delivery_period"
    switch = understand(classifier, history, "I also want to change my shipping address")
    assert not switch.continued and switch.intent in ("change_shipping_address", "set_up_shipping_address")
    human = understand(classifier, history, "I want to talk to a real person")
    assert human.intent == "contact_human_agent" and not human.continued


def test_no_intent_is_continued_after_a_hand_off(classifier: Any) -> None:
    turn = understand(classifier, _turns(("I want to speak to a human", "contact_human_agent")), "it's ORD-55123")
    assert not turn.continued

"""Multi-turn customer-service dialogues for benchmarks/customer_service.py.

Built from the held-out part of the Bitext split (rows no adapter or classifier saw), with
customer turns in the shapes a chat widget gets after the first message: a turn that only
gives an id or an email, an elliptical follow-up, a switch to another request, a request for
a human. The follow-up and slot phrasings below are written for this benchmark and differ from
the ones ``apps.customer_service.sft_data`` trains on. Each turn carries what a correct
service does: the intent it serves, the slot it supplies, whether it must be handed over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Dialogue", "Turn", "build_dialogues"]

ORDER_INTENTS = ("cancel_order", "change_order", "track_order", "get_refund", "track_refund")
INVOICE_INTENTS = ("check_invoice", "get_invoice")
ACCOUNT_INTENTS = ("recover_password", "registration_problems", "edit_account", "newsletter_subscription")
ORDER_TURNS = ("sure, it's {v}", "{v} is the order number", "here you go: {v}", "ref {v}", "It is {v}", "#{v}")
INVOICE_TURNS = ("the invoice is {v}", "it's {v}", "number {v}", "{v}")
EMAIL_TURNS = ("my email address is {v}", "it's {v}", "use {v}")
FOLLOW_UPS = {
    "delivery_period": ("and how long does delivery take?", "how many days until it arrives?"),
    "check_payment_methods": ("and which payment methods do you accept?", "can I pay with PayPal?"),
    "check_refund_policy": ("what is your refund policy?", "and can I get my money back if I don't like it?"),
    "delivery_options": ("and what shipping options do you have?", "do you offer express shipping?"),
    "contact_customer_service": ("and what are your customer service hours?", "how do I reach customer service?"),
    "track_refund": ("and how do I check the status of my refund?",),
    "check_cancellation_fee": ("is there a fee if I cancel?",),
    "get_invoice": ("can I also get the invoice for it?",),
}
HUMAN_TURNS = ("I want to talk to a real person", "this is useless, get me a human agent", "can I speak to someone?")


@dataclass(frozen=True)
class Turn:
    message: str
    intent: str  # the intent a correct service serves
    slot: tuple[str, str] | None = None  # (slot name, value) the turn supplies
    escalate: bool = False


@dataclass
class Dialogue:
    kind: str
    turns: list[Turn] = field(default_factory=list)


def _id(kind: str, rng: random.Random) -> str:
    n = rng.randint(10000, 99999)
    if kind == "invoice_id":
        return rng.choice((f"INV-{n}", f"IN-{rng.randint(2020, 2026)}-{n % 1000:03d}"))
    return rng.choice((f"ORD-{n}", f"{rng.choice('ABCDEFGH')}{rng.randint(10, 99)}-{n}", f"PO{n}{rng.randint(0, 9)}"))


def build_dialogues(held_out: list[dict[str, str]], n: int = 48, seed: int = 0) -> list[Dialogue]:
    """``n`` dialogues (at least 40 asked for by the benchmark), an equal share of each kind.

    Args:
        held_out: Bitext rows no model was trained on (``instruction``, ``intent``).
        n: how many dialogues.
        seed: for the choice of rows, ids and phrasings.
    """
    from apps.customer_service.slots import extract_slots

    rng = random.Random(seed)
    by_intent: dict[str, list[str]] = {}
    for r in held_out:
        text = " ".join(r["instruction"].split())
        if not extract_slots(text):  # first turns without an id: the id comes later
            by_intent.setdefault(r["intent"], []).append(text)
    plain = sorted(i for i in by_intent if i not in ("contact_human_agent", "complaint"))

    def first(intents: tuple[str, ...] | list[str]) -> Turn:
        intent = rng.choice([i for i in intents if i in by_intent])
        return Turn(rng.choice(by_intent[intent]), intent)

    kinds = ["order_id", "invoice_id", "email", "follow_up", "switch", "escalation", "three_turns"]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        d = Dialogue(kind)
        if kind in ("order_id", "three_turns"):
            t1 = first(ORDER_INTENTS)
            v = _id("order_id", rng)
            d.turns = [t1, Turn(rng.choice(ORDER_TURNS).format(v=v), t1.intent, ("order_id", v))]
            if kind == "three_turns":
                follow = rng.choice(sorted(FOLLOW_UPS))
                d.turns.append(Turn(rng.choice(FOLLOW_UPS[follow]), follow))
        elif kind == "invoice_id":
            t1 = first(INVOICE_INTENTS)
            v = _id("invoice_id", rng)
            d.turns = [t1, Turn(rng.choice(INVOICE_TURNS).format(v=v), t1.intent, ("invoice_id", v))]
        elif kind == "email":
            t1 = first(ACCOUNT_INTENTS)
            v = f"{rng.choice(('maya', 'k.osei', 'lena.b', 'raj'))}{rng.randint(1, 99)}@example.net"
            d.turns = [t1, Turn(rng.choice(EMAIL_TURNS).format(v=v), t1.intent, ("email", v))]
        elif kind == "follow_up":
            follow = rng.choice(sorted(FOLLOW_UPS))
            t1 = first([i for i in plain if i != follow])
            d.turns = [t1, Turn(rng.choice(FOLLOW_UPS[follow]), follow)]
        elif kind == "switch":
            t1 = first(plain)
            t2 = first([i for i in plain if i != t1.intent])
            d.turns = [t1, t2]
        else:
            t1 = first(plain)
            d.turns = [t1, Turn(rng.choice(HUMAN_TURNS), "contact_human_agent", escalate=True)]
        out.append(d)
    return out

"""Dialogue state across turns: which intent a turn serves, and what text retrieval should see.

A turn that only supplies a detail ("it's ORD-55123", "my email is …") continues the intent that
is open instead of being classified from scratch, and a short elliptical follow-up ("and how long
does delivery take?") that the classifier is unsure of is classified with the previous customer
message in view. The slot extraction of the turn knows which id the open intent asks for, so a
bare reference fills it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apps.customer_service.slots import extract_slots, is_slot_only

__all__ = ["ID_SLOT_OF_INTENT", "TurnUnderstanding", "understand"]

# the id an intent's answer is about (a bare reference in a later turn fills it)
ID_SLOT_OF_INTENT = {
    "cancel_order": "order_id",
    "change_order": "order_id",
    "track_order": "order_id",
    "delivery_period": "order_id",
    "change_shipping_address": "order_id",
    "get_refund": "order_id",
    "track_refund": "order_id",
    "payment_issue": "order_id",
    "check_invoice": "invoice_id",
    "get_invoice": "invoice_id",
}
# below this, a follow-up is re-classified together with the previous customer message
FOLLOW_UP_CONFIDENCE = 0.6
NO_CONTINUATION = frozenset({"contact_human_agent", "complaint"})


@dataclass(frozen=True)
class TurnUnderstanding:
    """What one customer turn means in its conversation.

    Attributes:
        intent: the intent the turn serves.
        confidence: the classifier's probability for it.
        query: the text retrieval should search with.
        slots: the values this turn supplies.
        continued: the turn only supplied details for the open intent.
    """

    intent: str
    confidence: float
    query: str
    slots: dict[str, str]
    continued: bool = False


def _previous_user_turn(turns: Sequence[Any]) -> Any | None:
    for t in reversed(turns):
        if t.role == "user" and t.intent:
            return t
    return None


def understand(classifier: Any, turns: Sequence[Any], message: str) -> TurnUnderstanding:
    """Classify ``message`` with the conversation's ``turns`` (oldest first) in view.

    Args:
        classifier: has ``predict(text) -> IntentPrediction``.
        turns: earlier turns (``role``, ``content``, ``intent``).
        message: the customer's new message.

    Returns:
        the turn's intent, confidence, retrieval query and slots.
    """
    previous = _previous_user_turn(turns)
    before = previous.content if previous is not None else ""
    open_intent = previous.intent if previous is not None and previous.intent not in NO_CONTINUATION else None
    slots = extract_slots(message, expecting=ID_SLOT_OF_INTENT.get(open_intent or ""))
    if open_intent and is_slot_only(message, slots):
        joint = classifier.predict(f"{before} {message}")
        confidence = dict(joint.top).get(open_intent, 0.0)
        return TurnUnderstanding(open_intent, max(confidence, joint.confidence if joint.intent == open_intent else 0.0),
                                 f"{before} {message}", slots, continued=True)  # fmt: skip
    alone = classifier.predict(message)
    if previous is not None and alone.confidence < FOLLOW_UP_CONFIDENCE:
        joint = classifier.predict(f"{before} {message}")
        if joint.confidence > alone.confidence:
            return TurnUnderstanding(joint.intent, joint.confidence, f"{before} {message}", slots)
    return TurnUnderstanding(alone.intent, alone.confidence, message, slots)

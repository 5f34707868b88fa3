"""Entity (slot) extraction from a customer turn: order/invoice ids, amounts, names, emails, places."""

from __future__ import annotations

import re

__all__ = ["extract_slots"]

_ORDER = re.compile(
    r"(?:order|purchase|tracking|package|parcel)\s*(?:number|no\.?|id|#)?\s*(?:is\s+)?[:#]?\s*([A-Z0-9][A-Z0-9-]{4,24})\b",
    re.IGNORECASE,
)
_INVOICE = re.compile(
    r"(?:invoice|bill|receipt)\s*(?:number|no\.?|id|#)?\s*(?:is\s+)?[:#]?\s*([A-Z0-9][A-Z0-9-]{4,24})\b", re.IGNORECASE
)
_HASH_ID = re.compile(r"#\s?([A-Z0-9-]{5,24})\b", re.IGNORECASE)
_AMOUNT = re.compile(
    r"(?:[$€£]\s?\d[\d,]*(?:\.\d{1,2})?|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:dollars|euros|pounds|usd|eur|gbp)\b)", re.I
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_NAME = re.compile(r"\b(?:my name is|i am|i'm|this is)\s+([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\b")
_ACCOUNT_TYPES = ("platinum", "gold", "premium", "standard", "free", "freemium", "pro")
_ACCOUNT = re.compile(r"\b(" + "|".join(_ACCOUNT_TYPES) + r")\b(?=\s+(?:account|profile|plan|membership))", re.I)
_CITY = re.compile(r"\b(?:to|in|at)\s+([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)\b")
_NOT_IDS = {"status", "history", "details", "number", "please", "asap", "today", "items"}


def _id(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    value = match.group(1).strip("-")
    if value.lower() in _NOT_IDS or not any(ch.isdigit() for ch in value):
        return None
    return value


def extract_slots(text: str) -> dict[str, str]:
    """Find slot values in one utterance.

    Args:
        text: the user's message.

    Returns:
        slot name → value for those found (``order_id``, ``invoice_id``, ``refund_amount``,
        ``email``, ``person_name``, ``account_type``, ``delivery_city``).
    """
    slots: dict[str, str] = {}
    invoice = _id(_INVOICE.search(text))
    order = _id(_ORDER.search(text)) or (None if invoice else _id(_HASH_ID.search(text)))
    if order:
        slots["order_id"] = order
    if invoice:
        slots["invoice_id"] = invoice
    if m := _AMOUNT.search(text):
        slots["refund_amount"] = m.group(0).strip()
    if m := _EMAIL.search(text):
        slots["email"] = m.group(0)
    if m := _NAME.search(text):
        slots["person_name"] = m.group(1)
    if m := _ACCOUNT.search(text):
        slots["account_type"] = m.group(1).lower()
    if (m := _CITY.search(text)) and m.group(1).split()[0] not in {"The", "My", "Your", "I"}:
        slots["delivery_city"] = m.group(1)
    return slots

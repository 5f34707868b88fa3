"""Entity (slot) extraction from a customer turn: order/invoice ids, amounts, names, emails, places.

Every pattern runs in linear time on hostile input: whitespace runs are collapsed first (so no
two adjacent unbounded ``\\s*`` can trade characters), and every repeated class is bounded.
"""

from __future__ import annotations

import re

__all__ = ["ID_SLOTS", "extract_slots", "is_slot_only"]

ID_SLOTS = ("order_id", "invoice_id")

_KEYWORD_ID = r" ?(?:number|no\.?|id|#)? ?(?:is )?[:#]? ?([A-Z0-9][A-Z0-9-]{4,24})\b"
_ORDER = re.compile(r"\b(?:order|purchase|tracking|package|parcel)" + _KEYWORD_ID, re.IGNORECASE)
_INVOICE = re.compile(r"\b(?:invoice|bill|receipt)" + _KEYWORD_ID, re.IGNORECASE)
_HASH_ID = re.compile(r"#([A-Z0-9][A-Z0-9-]{4,24})\b", re.IGNORECASE)
# a bare reference such as ORD-55123, A77-10293, INV-2024-118 or 4481-2290 ("it's ORD-55123")
_BARE_ID = re.compile(r"(?<![\w@.-])([A-Z]{0,5}\d{0,6}-?\d{3,12}(?:-\d{1,12}){0,3})(?![\w@-])")
_AMOUNT = re.compile(
    r"(?:[$€£] ?\d[\d,]{0,15}(?:\.\d{1,2})?|\b\d[\d,]{0,15}(?:\.\d{1,2})? ?(?:dollars|euros|pounds|usd|eur|gbp)\b)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}\b")
_NAME = re.compile(r"\b(?:my name is|i am|i'm|this is) ([A-Z][a-z]{1,30}(?: [A-Z][a-z]{1,30})?)\b")
_ACCOUNT_TYPES = ("platinum", "gold", "premium", "standard", "free", "freemium", "pro")
_ACCOUNT = re.compile(r"\b(" + "|".join(_ACCOUNT_TYPES) + r")\b(?= (?:account|profile|plan|membership))", re.I)
_CITY = re.compile(r"\b(?:to|in|at) ([A-Z][a-z]{1,30}(?: [A-Z][a-z]{1,30})?)\b")
_NOT_IDS = {"status", "history", "details", "number", "please", "asap", "today", "items"}
_NOT_CITIES = {"The", "My", "Your", "I", "A", "An", "Order", "Invoice"}
_WORD = re.compile(r"[a-z]{2,}")
# words that carry no request of their own in a turn that only supplies a detail
_FILLER = frozenset(
    (
        "it",
        "its",
        "it's",
        "is",
        "was",
        "the",
        "a",
        "an",
        "my",
        "our",
        "your",
        "this",
        "that",
        "here",
        "there",
        "yes",
        "yeah",
        "yep",
        "sure",
        "ok",
        "okay",
        "thanks",
        "thank",
        "you",
        "please",
        "number",
        "no",
        "id",
        "order",
        "invoice",
        "bill",
        "receipt",
        "purchase",
        "tracking",
        "reference",
        "email",
        "mail",
        "address",
        "name",
        "called",
        "am",
        "i",
        "i'm",
        "im",
        "me",
        "of",
        "for",
        "and",
        "to",
        "in",
        "at",
        "be",
        "should",
        "would",
        "new",
        "one",
        "sorry",
        "oh",
        "right",
        "correct",
    )
)


def _id(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    value = match.group(1).strip("-")
    if value.lower() in _NOT_IDS or not any(ch.isdigit() for ch in value):
        return None
    return value


def _bare_id(text: str) -> str | None:
    for m in _BARE_ID.finditer(text):
        value = m.group(1).strip("-")
        digits = sum(ch.isdigit() for ch in value)
        # "10293" or "ORD-55123", but not a year, a price or a phone-length digit run
        if digits >= 4 and (not value.isdigit() or 5 <= len(value) <= 12):
            return value
    return None


def extract_slots(text: str, expecting: str | None = None) -> dict[str, str]:
    """Find slot values in one utterance.

    Args:
        text: the user's message (any length: every pattern is linear).
        expecting: the id slot the open intent asks for (``order_id`` or ``invoice_id``); a bare
            reference such as "it's ORD-55123" fills it.

    Returns:
        slot name → value for those found (``order_id``, ``invoice_id``, ``refund_amount``,
        ``email``, ``person_name``, ``account_type``, ``delivery_city``).
    """
    text = " ".join(text.split())  # collapse whitespace runs: the patterns below allow single spaces
    slots: dict[str, str] = {}
    if m := _EMAIL.search(text):
        slots["email"] = m.group(0)
        without_email = text[: m.start()] + " " + text[m.end() :]
    else:
        without_email = text
    invoice = _id(_INVOICE.search(without_email))
    order = _id(_ORDER.search(without_email))
    if not order and not invoice and (hashed := _id(_HASH_ID.search(without_email))):
        if expecting == "invoice_id":  # "#A77-10293" while an invoice is asked for
            invoice = hashed
        else:
            order = hashed
    if order:
        slots["order_id"] = order
    if invoice:
        slots["invoice_id"] = invoice
    if not order and not invoice and (bare := _bare_id(without_email)):
        slots["invoice_id" if expecting == "invoice_id" else "order_id"] = bare
    if (m := _AMOUNT.search(without_email)) and m.group(0).strip() not in slots.values():
        slots["refund_amount"] = m.group(0).strip()
    if m := _NAME.search(text):
        slots["person_name"] = m.group(1)
    if m := _ACCOUNT.search(text):
        slots["account_type"] = m.group(1).lower()
    if (m := _CITY.search(text)) and m.group(1).split()[0] not in _NOT_CITIES:
        slots["delivery_city"] = m.group(1)
    return slots


def is_slot_only(text: str, slots: dict[str, str]) -> bool:
    """True for a turn that only supplies details ("it's ORD-55123", "my email is …", "the new one
    should be in Denver"): once the slot values are removed, no content word remains, or one
    in a turn that asks nothing ("refund of $49.99 please", but not "where is order #A7-118?")."""
    if not slots:
        return False
    rest = " ".join(text.split()).lower()
    for value in slots.values():
        rest = rest.replace(value.lower(), " ")
    content = [w for w in _WORD.findall(rest) if w not in _FILLER]
    return not content or (len(content) == 1 and "?" not in text)

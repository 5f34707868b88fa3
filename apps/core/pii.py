"""Mask personal data in free text: emails, card numbers, IBANs, order ids, phone numbers, names.

Used on every log line (``KGNLP_OBSERVABILITY__MASK_PII_LOGS``) and by code that stores user
texts, slots, alert explanations and webhook payloads (``KGNLP_OBSERVABILITY__MASK_PII_STORED``);
both are on by default. Card numbers
must pass the Luhn check and IBANs the ISO 7064 mod-97 check, so amounts, ids and dates are
left alone; phone numbers need 9–15 digits (8 with a leading ``+``), separators unless
international, and must not look like a date, time, version or IP address. Masks are
``[EMAIL]``, ``[CARD]``, ``[IBAN]``, ``[ORDER_ID]``, ``[PHONE]``, ``[NAME]``. Names are found only
where a customer introduces themself ("my name is Ana Silva", "I'm Ana", "call me Ana": the forms
the slot extractor reads) and, in stored turns, wherever a name or email given as a slot recurs
(:func:`mask_known`). A statistical tagger would find more (a name with no introduction); none is
used yet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["PERSONAL_SLOTS", "PLACEHOLDERS", "luhn_ok", "mask_known", "mask_pii", "mask_slots"]

# slots that are personal data whatever their value: stored as the placeholder alone
PERSONAL_SLOTS: dict[str, str] = {"person_name": "[NAME]", "email": "[EMAIL]"}
# slots that name an order or invoice, not a person; later turns need them ("where is it now?")
_REFERENCE_SLOTS = frozenset(("order_id", "invoice_id"))
PLACEHOLDERS = frozenset(("[EMAIL]", "[CARD]", "[IBAN]", "[ORDER_ID]", "[PHONE]", "[NAME]"))

# Linear on hostile input: a match starts only where a run of local-part characters starts (the
# look-behind names the same class), and every repeat is bounded (RFC 5321 lengths).
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_ORDER = re.compile(r"\b(?:ORD|ORDER)-?\d{3,}\b|(?<![\w&])#\d{4,}\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{5,}\d(?![\w])")
# a customer's own introduction; the name is one to three capitalised words (bounded: linear)
_NAME = re.compile(
    r"\b((?i:my name is|my name's|i am called|i am|i'm|i’m|this is|call me)[ ,:]{1,3})"
    r"[A-Z][a-z]{1,30}(?:[ -][A-Z][a-z]{1,30}){0,2}\b"
)
_DATE_TIME_IP = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|\d{1,3}(?:\.\d{1,3}){3}|\b\d{1,2}\.\d{1,3}\.\d{1,3}\b"
)


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum (payment card numbers do).

    Args:
        digits: only the digits.

    Returns:
        True when the checksum is valid.
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group()


def _phone(m: re.Match[str]) -> str:
    text = m.group()
    digits = sum(c.isdigit() for c in text)
    international = text.startswith(("+", "00"))
    if not (8 if international else 9) <= digits <= 15:
        return text
    if not international and (text.isdigit() or _DATE_TIME_IP.search(text)):
        return text  # a bare digit run is as likely an id or a timestamp
    return "[PHONE]"


def mask_pii(text: str) -> str:
    """Replace emails, card numbers (Luhn-checked), IBANs (mod-97-checked), order ids
    (``ORD-12345``, ``#123456``), phone numbers and self-introduced names with placeholders.

    Args:
        text: any text.

    Returns:
        the text with personal data replaced by ``[EMAIL]``, ``[CARD]``, ``[IBAN]``,
        ``[ORDER_ID]``, ``[PHONE]`` or ``[NAME]``.
    """
    return _mask(text, order_ids=True)


def _mask(text: str, order_ids: bool) -> str:
    if not text:
        return text
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(lambda m: "[IBAN]" if _iban_ok(m.group()) else m.group(), text)
    text = _CARD.sub(_card, text)
    if order_ids:
        text = _ORDER.sub("[ORDER_ID]", text)
    text = _PHONE.sub(_phone, text)
    return _NAME.sub(lambda m: m.group(1) + "[NAME]", text)


def mask_slots(slots: Mapping[str, str], mask: Callable[[str], str] = mask_pii) -> dict[str, str]:
    """Slot values as they are stored when stored-text masking is on.

    Args:
        slots: slot name → the value the customer gave.
        mask: the text mask for slots that are neither personal nor references.

    Returns:
        ``person_name`` and ``email`` as their placeholder; order and invoice references kept
        (later turns of the conversation need them, and they identify an order, not a person)
        unless they hold an email, card, IBAN, phone or name; any other slot through ``mask``.
    """
    out: dict[str, str] = {}
    for key, value in slots.items():
        if key in PERSONAL_SLOTS:
            out[key] = PERSONAL_SLOTS[key]
        elif key in _REFERENCE_SLOTS:
            out[key] = _mask(value, order_ids=False)
        else:
            out[key] = mask(value)
    return out


def mask_known(text: str, slots: Mapping[str, str]) -> str:
    """``text`` with every occurrence of the personal slot values (a name, an email) replaced by
    their placeholder: a name the conversation repeats without "my name is" around it.

    Args:
        text: a turn's text.
        slots: slot name → value, as the turn used them.

    Returns:
        the text with those values masked (whole words only, any case).
    """
    for key, placeholder in PERSONAL_SLOTS.items():
        value = slots.get(key, "").strip()
        if len(value) >= 2 and value not in PLACEHOLDERS:
            text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", placeholder, text, flags=re.IGNORECASE)
    return text

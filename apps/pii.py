"""Mask personal data in free text: emails, card numbers, IBANs, order ids, phone numbers.

Used on every log line (``KGNLP_OBSERVABILITY__MASK_PII_LOGS``, on by default) and, where
``KGNLP_OBSERVABILITY__MASK_PII_STORED`` is set, by code that stores user texts. Card numbers
must pass the Luhn check and IBANs the ISO 7064 mod-97 check, so amounts, ids and dates are
left alone; phone numbers need 9–15 digits (8 with a leading ``+``), separators unless
international, and must not look like a date, time, version or IP address. Masks are
``[EMAIL]``, ``[CARD]``, ``[IBAN]``, ``[ORDER_ID]``, ``[PHONE]``.
"""

from __future__ import annotations

import re

__all__ = ["luhn_ok", "mask_pii"]

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_ORDER = re.compile(r"\b(?:ORD|ORDER)-?\d{3,}\b|(?<![\w&])#\d{4,}\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{5,}\d(?![\w])")
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
    (``ORD-12345``, ``#123456``) and phone numbers with placeholders.

    Args:
        text: any text.

    Returns:
        the text with personal data replaced by ``[EMAIL]``, ``[CARD]``, ``[IBAN]``,
        ``[ORDER_ID]`` or ``[PHONE]``.
    """
    if not text:
        return text
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(lambda m: "[IBAN]" if _iban_ok(m.group()) else m.group(), text)
    text = _CARD.sub(_card, text)
    text = _ORDER.sub("[ORDER_ID]", text)
    return _PHONE.sub(_phone, text)

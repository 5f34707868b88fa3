"""The company profile and the filling of Bitext ``{{placeholders}}``: never shown raw."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kgnlp.errors import ConfigurationError

__all__ = ["PLACEHOLDER", "CompanyProfile"]

# One bounded class between the braces (the name is stripped afterwards): two adjacent ``\s*``
# around a lazy group made this cubic on "{{" followed by a whitespace run.
PLACEHOLDER = re.compile(r"\{\{([^{}]{1,120})\}\}")
# The Bitext answers also carry literal ids of *other* customers (7+ digits); never echo them.
_DATASET_ID = re.compile(r"(#\s?)?\b\d{7,}\b")
# Generators also write placeholders as "[Customer Support Phone Number]": filled when known.
_BRACKETED = re.compile(r"\[([A-Z][A-Za-z ]{2,60})\]")
# "the number {{Order Number Anonymized}}" without an order id reads "the number your order number":
# the words before the fallback phrase that it already says are dropped.
_REDUNDANT = re.compile(
    r"\b(?:the |an? |your )?(?:(?:order|purchase|invoice|bill) )?(?:number|no\.|#)\s?:?\s?"
    r"(?=your (order|invoice) number\b)"
    r"|\b(?:order|purchase|invoice|bill) #?\s?(?=your (order|invoice) number\b)",
    re.IGNORECASE,
)
_ANONYMIZED = re.compile(
    r"\b(?:order|purchase|invoice|bill|account|tracking)\b[^{}]{0,120}?\banonymized$", re.IGNORECASE
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class CompanyProfile:
    """Values for placeholders such as ``{{Customer Support Phone Number}}``.

    Args:
        values: placeholder key (lower snake case) → text.
        aliases: other keys that mean one of ``values``.
    """

    values: Mapping[str, str]
    aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> CompanyProfile:
        """Read ``company.yaml``.

        Raises:
            ConfigurationError: unreadable file or a non-text value (names the key).
        """
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigurationError(f"cannot read company profile {path}: {e}") from e
        aliases = raw.pop("aliases", {}) or {}
        values = {}
        for k, v in raw.items():
            if not isinstance(v, str | int | float):
                raise ConfigurationError(f"{path}: {k} must be text, got {type(v).__name__}")
            values[_key(str(k))] = str(v)
        return cls(values, {_key(a): _key(t) for a, t in aliases.items()})

    def value(self, name: str, slots: Mapping[str, str] | None = None) -> str:
        """The text for one placeholder name (never the raw placeholder)."""
        key = _key(name)
        key = self.aliases.get(key, key)
        if key in self.values:
            return self.values[key]
        slots = slots or {}
        if _ANONYMIZED.search(name):
            kind = "invoice_id" if re.search(r"invoice|bill", name, re.I) else "order_id"
            return slots.get(kind) or ("your invoice number" if kind == "invoice_id" else "your order number")
        if key in ("person_name", "client_first_name", "client_name", "name"):
            return slots.get("person_name", "there")
        if key.endswith("_amount") or key == "refund_amount":
            return slots.get("refund_amount", "the amount")
        # UI labels ("Order History", "Cancel Order"): the label itself, quoted as on screen
        return f"'{name.strip()}'"

    def fill(self, text: str, slots: Mapping[str, str] | None = None) -> str:
        """Replace every ``{{placeholder}}`` and example id, and drop stray braces left by a generator."""
        slots = slots or {}
        filled = PLACEHOLDER.sub(lambda m: self.value(m.group(1).strip(), slots), text)

        def own_id(m: re.Match[str]) -> str:
            before = filled[max(0, m.start() - 25) : m.start()].lower()
            kind, phrase = (
                ("invoice_id", "your invoice number")
                if "invoice" in before or "bill" in before
                else ("order_id", "your order number")
            )
            return (m.group(1) or "") + slots[kind] if kind in slots else phrase

        filled = _DATASET_ID.sub(own_id, filled)

        def bracketed(m: re.Match[str]) -> str:
            key = _key(m.group(1))
            return self.values.get(self.aliases.get(key, key), m.group(0))

        filled = _BRACKETED.sub(bracketed, filled)
        filled = _REDUNDANT.sub("", filled)
        return filled.replace("{{", "").replace("}}", "")

"""Reading events for a replay from CSV or JSONL, validated like the API validates them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import ValidationError as PydanticValidationError

from apps.sentiment.schemas import EventItem
from apps.sentiment.service import EventIn
from kgnlp.errors import ValidationError

__all__ = ["read_events"]


def read_events(path: Path, default_source: str = "replay") -> list[EventIn]:
    """All events of a ``.csv`` (with a header row) or ``.jsonl``/``.json`` lines file.

    Raises:
        ValidationError: naming the line and field of the first bad row (nothing is ingested).
    """
    rows: list[tuple[int, dict[str, object]]] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if path.suffix.lower() == ".csv":
                rows = [(i + 2, dict(r)) for i, r in enumerate(csv.DictReader(fh))]
            else:
                for i, line in enumerate(fh, start=1):
                    if line.strip():
                        obj = json.loads(line)
                        if not isinstance(obj, dict):
                            raise ValidationError(f"{path}:{i}: each line must be a JSON object")
                        rows.append((i, obj))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"cannot read events from {path}: {e}") from e
    out = []
    for lineno, raw in rows:
        fields = {k: v for k, v in raw.items() if k in EventItem.model_fields and v not in (None, "")}
        fields.setdefault("source", default_source)
        try:
            item = EventItem.model_validate(fields)
        except PydanticValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "row"
            raise ValidationError(f"{path}:{lineno}: {field}: {first['msg']}") from err
        out.append(EventIn(item.id, item.text, item.timestamp, item.source, item.entity))
    return out

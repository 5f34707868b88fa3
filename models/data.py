"""Training data: labelled CSV/JSONL, chat JSONL, stratified splits, light text augmentation.

Readers stream (``iter_records``) so batch prediction never holds a large file in memory.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgnlp.errors import ValidationError

if TYPE_CHECKING:
    from models.config import RunConfig

__all__ = [
    "LabelledSet",
    "augment_text",
    "iter_records",
    "load_chat",
    "load_labelled",
    "read_texts",
    "run_splits",
    "stratified_split",
    "tokenize_chat",
]


@dataclass(frozen=True)
class LabelledSet:
    """Texts with their string labels."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int]) -> LabelledSet:
        return LabelledSet([self.texts[i] for i in idx], [self.labels[i] for i in idx])


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Stream rows of a ``.csv`` (header row) or ``.jsonl`` file as dicts.

    Raises:
        ValidationError: unknown extension or a malformed JSON line (with file:line).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    elif suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise ValidationError(f"{path}:{n}: invalid JSON ({e})") from e
                if not isinstance(row, dict):
                    raise ValidationError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
                yield row
    else:
        raise ValidationError(f"{path}: unsupported file type {suffix!r} (use .csv or .jsonl)")


def read_texts(path: Path, text_field: str = "text") -> list[str]:
    """Unlabelled texts: a ``.txt`` file (one text per line) or a ``.csv``/``.jsonl`` column.

    Raises:
        ValidationError: a missing column, or no text at all.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        with open(path, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
    else:
        texts = []
        for n, row in enumerate(iter_records(path), 1):
            if text_field not in row:
                raise ValidationError(f"{path}: row {n} has no {text_field!r} field")
            if str(row[text_field]).strip():
                texts.append(str(row[text_field]).strip())
    if not texts:
        raise ValidationError(f"{path}: no texts")
    return texts


def load_labelled(path: Path, text_field: str = "text", label_field: str = "label") -> LabelledSet:
    """Read a labelled CSV/JSONL file.

    Args:
        path: the file.
        text_field: column/key holding the text.
        label_field: column/key holding the label (any scalar; kept as a string).

    Returns:
        A ``LabelledSet``.
    """
    texts, labels = [], []
    for n, row in enumerate(iter_records(path), 1):
        if text_field not in row or label_field not in row:
            raise ValidationError(f"{path}: row {n} lacks {text_field!r} or {label_field!r} (has {sorted(row)})")
        texts.append(str(row[text_field]))
        labels.append(str(row[label_field]))
    if not texts:
        raise ValidationError(f"{path}: no rows")
    return LabelledSet(texts, labels)


def stratified_split(labels: Sequence[str], fractions: Sequence[float], seed: int = 13) -> tuple[list[int], ...]:
    """Split indices per class so every part keeps the class mix.

    Args:
        labels: one label per example.
        fractions: sizes of the parts after the first (e.g. ``(0.1, 0.1)`` → train/val/test = 80/10/10).
        seed: shuffling seed.

    Returns:
        ``1 + len(fractions)`` sorted index lists; the first takes the remainder.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for y in sorted(by_class):
        idx = by_class[y]
        rng.shuffle(idx)
        start = 0
        for k, frac in enumerate(fractions, 1):
            n = round(len(idx) * frac)
            parts[k].extend(idx[start : start + n])
            start += n
        parts[0].extend(idx[start:])
    return tuple(sorted(p) for p in parts)


def load_chat(path: Path, messages_field: str = "messages") -> list[list[dict[str, str]]]:
    """Read chat JSONL: one ``{"messages": [{"role", "content"}, ...]}`` conversation per line."""
    out = []
    for n, row in enumerate(iter_records(path), 1):
        msgs = row.get(messages_field)
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise ValidationError(f"{path}: row {n}: {messages_field!r} must be a list of {{role, content}} objects")
        if not any(m["role"] == "assistant" for m in msgs):
            raise ValidationError(f"{path}: row {n}: no assistant message to learn from")
        out.append(msgs)
    return out


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> tuple[list[int], list[int]]:
    """Tokenise a conversation with the chat template; labels are -100 except on assistant tokens.

    Each assistant turn's span is found by rendering the conversation up to that
    turn with and without it, so the mask follows whatever template the model uses.

    Returns:
        ``(input_ids, labels)``, truncated to ``max_len``.
    """

    def render(msgs: list[dict[str, str]], gen_prompt: bool) -> list[int]:
        ids = tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen_prompt)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    full = render(messages, False)
    labels = [-100] * len(full)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(render(messages[:i], True))
        end = len(render(messages[: i + 1], False))
        for t in range(start, min(end, len(full))):
            labels[t] = full[t]
    return full[:max_len], labels[:max_len]


_SYNONYMS = {
    "card": ["debit card", "bank card"],
    "money": ["funds", "cash"],
    "transfer": ["payment", "transaction"],
    "account": ["bank account"],
    "refund": ["reimbursement"],
    "cancel": ["stop", "revoke"],
    "fee": ["charge"],
    "help": ["assist"],
    "why": ["how come"],
    "wrong": ["incorrect"],
    "buy": ["purchase"],
    "get": ["obtain", "receive"],
    "rise": ["increase", "gain"],
    "fall": ["decline", "drop"],
    "profit": ["earnings"],
    "sales": ["revenue"],
}


def augment_text(text: str, kind: str, prob: float, rng: random.Random) -> str:
    """Cheap augmentation of one text.

    Args:
        text: the input.
        kind: ``"synonym"`` (replace words from a small built-in synonym table) or
            ``"noise"`` (back-off noise: drop or swap words with probability ``prob``).
        prob: per-word probability.
        rng: the random source (seeded by the caller for determinism).

    Returns:
        The augmented text (never empty).
    """
    words = text.split()
    if kind == "synonym":
        words = [
            rng.choice(_SYNONYMS[w.lower()]) if w.lower() in _SYNONYMS and rng.random() < prob * 3 else w for w in words
        ]
    elif kind == "noise":
        kept = [w for w in words if rng.random() >= prob] or words[:1]
        for i in range(len(kept) - 1):
            if rng.random() < prob / 2:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        words = kept
    return " ".join(words) or text


def run_splits(cfg: RunConfig) -> tuple[Any, Any, Any]:
    """A run's train/validation/test ``LabelledSet``s (or chat lists for SFT), as its config defines them.

    Every tool that re-reads a run (quantize, prune, ensemble) calls this, so each sees the run's own split.
    """
    d = cfg.data
    train: Any
    val: Any
    test: Any
    if cfg.task == "sft":
        train = load_chat(d.train, d.messages_field)
        val = load_chat(d.validation, d.messages_field) if d.validation else []
        if not val and d.val_fraction > 0 and len(train) >= 10:
            rng = random.Random(d.split_seed)
            idx = list(range(len(train)))
            rng.shuffle(idx)
            n = max(1, round(len(train) * d.val_fraction))
            val, train = [train[i] for i in idx[:n]], [train[i] for i in idx[n:]]
        return train[: d.max_train_rows] if d.max_train_rows else train, val, []
    full = load_labelled(d.train, d.text_field, d.label_field)
    val = load_labelled(d.validation, d.text_field, d.label_field) if d.validation else None
    test = load_labelled(d.test, d.text_field, d.label_field) if d.test else None
    fracs = [] if val else [d.val_fraction]
    fracs += [] if test else [d.test_fraction]
    parts = stratified_split(full.labels, fracs, d.split_seed)
    train = full.subset(parts[0])
    k = 1
    if val is None:
        val, k = full.subset(parts[k]), k + 1
    if test is None:
        test = full.subset(parts[k])
    if d.max_train_rows and len(train) > d.max_train_rows:
        keep = stratified_split(train.labels, [1 - d.max_train_rows / len(train)], d.split_seed)[0]
        train = train.subset(keep)
    return train, val, test

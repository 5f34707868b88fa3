"""Short support answers: the first sentence and the first steps of a long Bitext answer.

A support answer on a chat widget is a few sentences. The Bitext answers are long (median 670
characters: an opening, a numbered list of steps, a closing paragraph), so the adapter's SFT
targets, the sources in its prompt and the retrieval-only answers are all cut by one rule,
at sentence and list-item boundaries (never mid-sentence): the model learns the length from
its targets instead of being cut off by ``max_tokens``.
"""

from __future__ import annotations

import re

__all__ = ["concise", "segments"]

# A segment ends at ". ", "! ", "? " (not "1." of a list or "e.g.") or at a line break.
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)'\"}][.!?])\s+(?=[A-Z{\"'(])")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+")


def segments(text: str) -> list[str]:
    """Sentences and list items of ``text``, in order, whitespace-normalised."""
    out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = " ".join(line.split())
        if not line:
            continue
        if _LIST_ITEM.match(line):
            out.append(line)
            continue
        out.extend(s for s in _SENTENCE_END.split(line) if s)
    return out


def concise(text: str, max_chars: int = 300, min_segments: int = 2) -> str:
    """The opening of ``text`` within ``max_chars``.

    Sentences that only announce what follows ("Here's how:") are dropped, list items keep
    their numbers and go on their own lines, and at least ``min_segments`` segments are kept
    while they fit in twice ``max_chars`` (so an answer is never just its greeting).

    Args:
        text: a long answer.
        max_chars: length budget.
        min_segments: segments kept even past ``max_chars``.

    Returns:
        the shortened answer (``text`` stripped when it is short already).
    """
    text = text.strip()
    if len(text) <= max_chars:
        return text
    kept: list[str] = []
    size = 0
    for seg in segments(text):
        if seg.endswith(":") and not _LIST_ITEM.match(seg):
            continue
        extra = len(seg) + (1 if kept else 0)
        over = size + extra > max_chars
        if over and (len(kept) >= min_segments or size + extra > 2 * max_chars):
            break
        kept.append(seg)
        size += extra
    if not kept:  # one very long sentence: cut at a word
        return text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    lines: list[str] = []
    for seg in kept:
        if _LIST_ITEM.match(seg) or (lines and _LIST_ITEM.match(lines[-1])):
            lines.append(seg)
        elif lines:
            lines[-1] += " " + seg
        else:
            lines.append(seg)
    return "\n".join(lines)

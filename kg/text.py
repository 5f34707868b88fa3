"""Text normalisation shared by the stores (search keys) and the entity linker.

One function decides what "the same name" means everywhere: Unicode
compatibility decomposition, accents removed, case folded, possessive ``'s``
dropped, punctuation turned into spaces, whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["normalize_key", "normalize_with_offsets"]

_APOSTROPHES = "'\u2019\u02bc`"
_ASCII_POSSESSIVE = re.compile(r"(?<=[a-z0-9])['`]s(?![a-z0-9])")
_ASCII_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=8192)  # a text repeats few distinct characters; decomposing each costs ~0.5 us
def _fold_char(ch: str) -> str:
    """Return the normalised form of one character (may be '', ' ' or several chars)."""
    if ch.isascii():
        if ch.isalnum():
            return ch.lower()
        return " "
    out = []
    for c in unicodedata.normalize("NFKD", ch):
        if unicodedata.combining(c):
            continue
        if c.isalnum():
            out.append(c.casefold())
        else:
            out.append(" ")
    return "".join(out)


def normalize_with_offsets(text: str) -> tuple[str, list[int]]:
    """Normalise ``text`` and map every output character back to the input.

    Args:
        text: Raw text.

    Returns:
        ``(normalised, offsets)`` where ``offsets[i]`` is the index in ``text``
        of the character that produced ``normalised[i]``. Runs of spaces are
        collapsed and the result has no leading/trailing space.
    """
    if text.isascii() and len(text) >= _VECTOR_MIN:
        return _ascii_with_offsets(text)
    return _general_with_offsets(text)


_VECTOR_MIN = 128  # below this the per-character loop is as fast as the array set-up


def _ascii_with_offsets(text: str) -> tuple[str, list[int]]:
    """``normalize_with_offsets`` of ASCII text with array operations (same result, ~10x faster)."""
    import numpy as np

    low = np.frombuffer(text.lower().encode("ascii"), dtype=np.uint8)
    alnum = ((low >= ord("a")) & (low <= ord("z"))) | ((low >= ord("0")) & (low <= ord("9")))
    # possessive "x's" / "x`s" not followed by a letter or digit: both characters vanish
    poss = np.zeros(len(low), dtype=bool)
    p = np.flatnonzero((low[1:-1] == ord("'")) | (low[1:-1] == ord("`"))) + 1
    p = p[alnum[p - 1] & (low[p + 1] == ord("s"))]
    p = p[(p + 2 == len(low)) | ~alnum[np.minimum(p + 2, len(low) - 1)]]
    poss[p] = poss[p + 1] = True
    rest = np.flatnonzero(~poss)
    word = alnum[rest]
    # a run of other characters becomes one space, at its first character, after a word character
    keep = word.copy()
    keep[1:] |= ~word[1:] & word[:-1]
    idx = rest[keep]
    if len(idx) and not alnum[idx[-1]]:
        idx = idx[:-1]
    chars = np.where(alnum[idx], low[idx], ord(" ")).astype(np.uint8)
    return chars.tobytes().decode("ascii"), idx.tolist()


def _general_with_offsets(text: str) -> tuple[str, list[int]]:
    out: list[str] = []
    offs: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        # possessive: "Apple's" / "Apple’s" -> "apple"
        if (
            ch in _APOSTROPHES
            and i + 1 < n
            and text[i + 1] in "sS"
            and (i + 2 == n or not text[i + 2].isalnum())
            and i > 0
            and text[i - 1].isalnum()
        ):
            i += 2
            continue
        for c in _fold_char(ch):
            if c == " ":
                if out and out[-1] != " ":
                    out.append(" ")
                    offs.append(i)
            else:
                out.append(c)
                offs.append(i)
        i += 1
    if out and out[-1] == " ":
        out.pop()
        offs.pop()
    return "".join(out), offs


def normalize_key(text: str) -> str:
    """Return the case-, accent- and punctuation-insensitive key of a name.

    Args:
        text: A name, alias or query.

    Returns:
        The normalised key, e.g. ``"Société Générale's"`` -> ``"societe generale"``.
    """
    if text.isascii():
        # fast path with the same result as the general path
        low = text.lower()
        if low.isalnum():
            return low
        return _ASCII_NON_ALNUM.sub(" ", _ASCII_POSSESSIVE.sub("", low)).strip()
    return normalize_with_offsets(text)[0]

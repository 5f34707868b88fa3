"""Entity linking: find mentions of known entities in free text.

Pipeline: (1) alias-dictionary matching with an Aho-Corasick automaton
(pyahocorasick) over normalised text (case, accents, punctuation, possessives),
on word boundaries; (2) cashtags (``$AAPL``) and exact upper-case symbols
(``AMD``) against a symbol attribute (``ticker``); (3) a fuzzy fallback
(rapidfuzz) for capitalised n-grams no exact rule matched; (4) when one
surface form names several entities, disambiguation by a type prior and, when
an embedder is given, cosine similarity between the text and each candidate's
name + description. Overlaps resolve to the longest, best-scored span.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kg.store import Entity, GraphStore
from kg.text import normalize_key, normalize_with_offsets
from kgnlp.errors import ConfigurationError

__all__ = ["Embedder", "Linker", "Mention", "linking_sample"]

Embedder = Callable[[list[str]], np.ndarray]
"""Maps texts to an (n, d) array of vectors (e.g. a sentence-transformers encode)."""

_STOPWORDS_TEXT = (
    "a an and are as at be been but by can could did do does for from had has have he her hers "
    "him his how i if in into is it its me my no not of on or our out over she so than that the "
    "their them then there these they this those to too up us was we were what when where which "
    "who why will with would you your all any new one more most other some such only own same "
    "just now also back well way even good best "
)
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:[.\-][A-Za-z])?)\b")
_SYMBOL = re.compile(r"(?<![\w$])([A-Z][A-Z0-9]{1,5}(?:\.[A-Z])?)(?![\w])")
_WORD = re.compile(r"\S+")
# short upper-case symbols that are ordinary words: linked only as cashtags
_SYMBOL_WORDS_TEXT = "A ALL AN ARE BE CAN DO FOR GO HAS IT KEY NOW ON OR SO TV US WELL ONE BIG LOW HD CAT "
_SYMBOL_WORDS = frozenset(_SYMBOL_WORDS_TEXT.split())


LOWERCASE_WORD_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class Mention:
    """A linked span of the input text.

    ``start``/``end`` are character offsets into the original text
    (``text[start:end] == surface``); ``candidates`` lists ``(entity_id, score)``
    best first when the surface form was ambiguous. ``score`` is the confidence
    that the span is a mention (match quality), not the disambiguation score.
    """

    start: int
    end: int
    surface: str
    entity_id: str
    entity_type: str
    name: str
    score: float
    method: str
    candidates: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class _Info:
    type: str
    name: str
    context: str


class Linker:
    """Dictionary + symbol + fuzzy entity linker over a fixed set of entities.

    Args:
        entities: Entities to link to (names and aliases become the dictionary).
        embedder: Optional ``texts -> (n, d) array`` used to disambiguate.
        type_priors: Relative prior per entity type (default 1.0 each).
        exclude_types: Entity types never linked (e.g. documents).
        symbol_attribute: Attribute holding a ticker-like symbol.
        fuzzy_threshold: Minimum rapidfuzz ratio (0-100) for the fuzzy fallback;
            ``None`` disables it.
    """

    def __init__(
        self,
        entities: Iterable[Entity],
        *,
        embedder: Embedder | None = None,
        type_priors: Mapping[str, float] | None = None,
        exclude_types: Iterable[str] = ("Document",),
        symbol_attribute: str = "ticker",
        fuzzy_threshold: float | None = 90.0,
    ) -> None:
        try:
            import ahocorasick
        except ImportError as err:  # pragma: no cover - core dependency
            raise ConfigurationError("entity linking needs the 'pyahocorasick' package") from err
        self.embedder = embedder
        self.type_priors = dict(type_priors or {})
        self.fuzzy_threshold = fuzzy_threshold
        excluded = set(exclude_types)
        self._info: dict[str, _Info] = {}
        self._by_key: dict[str, list[str]] = defaultdict(list)
        self._by_symbol: dict[str, list[str]] = defaultdict(list)
        for e in entities:
            if e.type in excluded:
                continue
            name = e.display_name()
            self._info[e.id] = _Info(e.type, name, f"{name}. {e.description}".strip())
            sym = e.attributes.get(symbol_attribute) if symbol_attribute else None
            if isinstance(sym, str) and sym:
                self._by_symbol[sym.upper()].append(e.id)
            for alias in [name, *e.aliases]:
                if isinstance(sym, str) and alias == sym:
                    continue  # symbols are matched case-sensitively, not as words
                key = normalize_key(alias)
                if len(key) < 2 or key in _STOPWORDS or key.isdigit():
                    continue
                ids = self._by_key[key]
                if e.id not in ids:
                    ids.append(e.id)
        self._automaton = ahocorasick.Automaton()
        for key in self._by_key:
            self._automaton.add_word(key, key)
        if self._by_key:
            self._automaton.make_automaton()
        self._keys = list(self._by_key)
        self._emb_cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_store(cls, store: GraphStore, **kwargs: Any) -> Linker:
        """Build a linker over every entity of a store.

        Args:
            store: The graph store.
            **kwargs: Passed to the constructor.

        Returns:
            The linker.
        """
        return cls(store.iter_entities(), **kwargs)

    def __len__(self) -> int:
        return len(self._info)

    # ------------------------------------------------------------------ linking
    def link(self, text: str, *, min_score: float = 0.6) -> list[Mention]:
        """Find entity mentions in ``text``.

        Args:
            text: Free text.
            min_score: Drop mentions scoring below this (0-1). The default drops
                lower-case single-word matches (scored 0.5); pass 0 to keep them.

        Returns:
            Non-overlapping mentions ordered by position.
        """
        if not text or not self._info:
            return []
        spans: list[tuple[int, int, list[str], float, str]] = []  # start, end, ids, score, method
        for m in _CASHTAG.finditer(text):
            ids = self._by_symbol.get(m.group(1).upper())
            if ids:
                spans.append((m.start(), m.end(), ids, 1.0, "cashtag"))
        for m in _SYMBOL.finditer(text):
            sym = m.group(1)
            ids = self._by_symbol.get(sym)
            if ids and sym not in _SYMBOL_WORDS:
                spans.append((m.start(), m.end(), ids, 0.9, "symbol"))
        norm, offs = normalize_with_offsets(text)
        if self._keys:
            n = len(norm)
            for end_idx, key in self._automaton.iter(norm):
                start = end_idx - len(key) + 1
                if (start > 0 and norm[start - 1] != " ") or (end_idx + 1 < n and norm[end_idx + 1] != " "):
                    continue
                o_start, o_end = offs[start], offs[end_idx] + 1
                surface = text[o_start:o_end]
                if len(key) <= 3 and surface.islower():
                    continue  # short aliases ("hp", "ge") only when capitalised
                # a lower-case single word is often an ordinary word ("target", "visa")
                score = LOWERCASE_WORD_SCORE if " " not in key and surface.islower() else 1.0
                spans.append((o_start, o_end, self._by_key[key], score, "alias"))
        if self.fuzzy_threshold is not None:
            spans += self._fuzzy(text, spans)
        chosen = self._resolve_overlaps(spans)
        out = []
        for start, end, ids, score, method in chosen:
            ranked = self._disambiguate(ids, text) if len(ids) > 1 else [(ids[0], 1.0)]
            best = ranked[0][0]
            info = self._info[best]
            s = round(score, 4)  # span confidence; which entity is in ``candidates``
            if s < min_score:
                continue
            out.append(
                Mention(
                    start,
                    end,
                    text[start:end],
                    best,
                    info.type,
                    info.name,
                    s,
                    method,
                    tuple(ranked) if len(ranked) > 1 else (),
                )
            )
        return out

    @staticmethod
    def _resolve_overlaps(
        spans: list[tuple[int, int, list[str], float, str]],
    ) -> list[tuple[int, int, list[str], float, str]]:
        order = {"cashtag": 0, "alias": 1, "symbol": 2, "fuzzy": 3}
        spans = sorted(spans, key=lambda s: (order[s[4]], -(s[1] - s[0]), -s[3], s[0]))
        taken: list[tuple[int, int]] = []
        chosen = []
        for sp in spans:
            if any(sp[0] < e and s < sp[1] for s, e in taken):
                continue
            taken.append((sp[0], sp[1]))
            chosen.append(sp)
        return sorted(chosen, key=lambda s: s[0])

    def _fuzzy(
        self, text: str, exact: list[tuple[int, int, list[str], float, str]]
    ) -> list[tuple[int, int, list[str], float, str]]:
        from rapidfuzz import fuzz, process

        covered = [(s, e) for s, e, *_ in exact]
        words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
        out = []
        for i in range(len(words)):
            w0 = words[i][2].lstrip("\"'(")
            if not w0[:1].isupper():
                continue  # proper-noun heuristic keeps the fallback cheap and precise
            for n in (3, 2, 1):
                if i + n > len(words):
                    continue
                start, end = words[i][0], words[i + n - 1][1]
                while end > start and not text[end - 1].isalnum():
                    end -= 1
                key = normalize_key(text[start:end])
                if len(key) < 5 or key in _STOPWORDS or key in self._by_key:
                    continue
                if any(start < e and s < end for s, e in covered):
                    continue
                hit = process.extractOne(key, self._keys, scorer=fuzz.ratio, score_cutoff=self.fuzzy_threshold)
                if hit:
                    out.append((start, end, self._by_key[hit[0]], 0.9 * hit[1] / 100.0, "fuzzy"))
                    covered.append((start, end))
                    break
        return out

    def _disambiguate(self, ids: list[str], text: str) -> list[tuple[str, float]]:
        prior = np.array([self.type_priors.get(self._info[i].type, 1.0) for i in ids], float)
        score = prior / prior.sum() if prior.sum() > 0 else np.full(len(ids), 1 / len(ids))
        if self.embedder is not None:
            missing = [i for i in ids if i not in self._emb_cache]
            if missing:
                vecs = np.asarray(self.embedder([self._info[i].context for i in missing]), float)
                for i, v in zip(missing, vecs, strict=True):
                    self._emb_cache[i] = v / (np.linalg.norm(v) or 1.0)
            q = np.asarray(self.embedder([text]), float)[0]
            q = q / (np.linalg.norm(q) or 1.0)
            sims = np.array([float(self._emb_cache[i] @ q) for i in ids])
            sim_w = np.exp(sims * 10.0)
            score = 0.3 * score + 0.7 * sim_w / sim_w.sum()
        order = np.argsort(-score, kind="stable")
        return [(ids[k], round(float(score[k]), 4)) for k in order]


_TEMPLATES = (
    "Shares of {0} rose after the earnings call.",
    "Analysts cut their price target on {0} this morning.",
    "Is {0} doing better than {1}?",
    "{0} and {1} both reported strong quarterly revenue.",
    "I am thinking about selling my {0} stock.",
    "{0}'s CEO spoke about supply chains.",
    "Why did {0} underperform {1} last year?",
    "The market was quiet on Tuesday and bond yields barely moved.",
    "Investors rotated out of {0} into cash.",
)


def linking_sample(store: GraphStore, n: int = 300, seed: int = 0) -> list[tuple[str, set[str]]]:
    """Build a labelled linking sample from the companies of a finance graph.

    Each sentence mentions 0-2 companies by official name, short name, ticker
    or cashtag (lower-cased names in a fifth of cases); the gold label is the
    set of company ids mentioned. Companies whose short name is shared by
    another company (share classes) are mentioned by ticker only.

    Args:
        store: A store holding the ``finance`` demo graph.
        n: Number of sentences.
        seed: Random seed.

    Returns:
        ``[(sentence, {entity ids}), ...]``.
    """
    rng = random.Random(seed)
    companies = store.find(type="Company", limit=10_000)
    if not companies:
        raise ConfigurationError("linking_sample needs a store with the finance demo graph")
    key_count: dict[str, int] = defaultdict(int)
    for c in companies:
        for a in {normalize_key(x) for x in [c.name, *c.aliases[1:]]}:
            key_count[a] += 1
    out = []
    for _ in range(n):
        tpl = rng.choice(_TEMPLATES)
        k = tpl.count("{")
        picks = rng.sample(companies, k)
        surfaces = []
        for c in picks:
            tk = c.attributes["ticker"]
            names = [x for x in [c.name, *c.aliases[1:]] if key_count[normalize_key(x)] == 1]
            forms = [f"${tk}", *names] + ([tk] if len(tk) > 2 else [])
            s = rng.choice(forms)
            if s in names and rng.random() < 0.2:
                s = s.lower()
            surfaces.append(s)
        out.append((tpl.format(*surfaces), {c.id for c in picks}))
    return out

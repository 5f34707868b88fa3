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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kg.store import Entity, GraphStore
from kg.text import normalize_key, normalize_with_offsets
from kgnlp.errors import ConfigurationError

__all__ = [
    "CONTEXT_CHARS",
    "MAX_CONTEXTS",
    "MAX_FUZZY_LOOKUPS",
    "MAX_MENTIONS",
    "Embedder",
    "Linker",
    "Mention",
    "linking_sample",
]

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
# "NASDAQ:SBGI", "ETR:CEV": a name or symbol right before a colon and a ticker is the exchange the
# ticker trades on, not a mention of a company of that name (the ticker itself is still linked)
_EXCHANGE_PREFIX = re.compile(r":[A-Z][A-Z0-9]{0,5}(?:\.[A-Z]{1,2})?\b")
# short upper-case symbols that are ordinary words: linked only as cashtags
_SYMBOL_WORDS_TEXT = "A ALL AN ARE BE CAN DO FOR GO HAS IT KEY NOW ON OR SO TV US WELL ONE BIG LOW HD CAT "
_SYMBOL_WORDS = frozenset(_SYMBOL_WORDS_TEXT.split())


LOWERCASE_WORD_SCORE = 0.5
MAX_MENTIONS = 100
"""Mentions returned per text at most (the first ones by position): bounds the work one text costs."""
CONTEXT_CHARS = 128
"""Characters around a text's first ambiguous mention embedded to disambiguate: one short embedding per text."""
MAX_CONTEXTS = 16
"""Texts per ``link_many`` call whose context is embedded at most (the first ones with an ambiguous
mention); the others rank candidates by type prior alone. Bounds the embedder's work per request."""
MAX_FUZZY_LOOKUPS = 64
"""Capitalised n-grams looked up in the fuzzy dictionary per text at most (memoised or scanned)."""
_FUZZY_CACHE_SIZE = 4096

_Span = tuple[int, int, list[str], float, str]  # start, end, entity ids, span score, method
_METHOD_ORDER = {"cashtag": 0, "alias": 1, "symbol": 2, "fuzzy": 3}


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

    The cost of a text is bounded for hostile input: candidate spans are found in
    one pass and overlaps resolved in time linear in their total length; at most
    ``max_mentions`` mentions and ``max_fuzzy_lookups`` fuzzy scans per text; one
    embedding per text (of ``context_chars`` around its first ambiguous mention),
    and :meth:`link_many` embeds the contexts of a batch in one embedder call, for at most
    ``max_contexts`` texts (the others rank by type prior alone).

    Args:
        entities: Entities to link to (names and aliases become the dictionary).
        embedder: Optional ``texts -> (n, d) array`` used to disambiguate.
        type_priors: Relative prior per entity type (default 1.0 each).
        exclude_types: Entity types never linked (e.g. documents).
        symbol_attribute: Attribute holding a ticker-like symbol.
        fuzzy_threshold: Minimum rapidfuzz ratio (0-100) for the fuzzy fallback;
            ``None`` disables it.
        max_mentions: Mentions returned per text at most (the first by position).
        context_chars: Length of the text window embedded for disambiguation
            (the whole text when shorter).
        max_fuzzy_lookups: Capitalised n-grams looked up in the fuzzy dictionary per text at most.
        max_contexts: Texts per :meth:`link_many` call whose context is embedded at most.
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
        max_mentions: int = MAX_MENTIONS,
        context_chars: int = CONTEXT_CHARS,
        max_fuzzy_lookups: int = MAX_FUZZY_LOOKUPS,
        max_contexts: int = MAX_CONTEXTS,
    ) -> None:
        try:
            import ahocorasick
        except ImportError as err:  # pragma: no cover - core dependency
            raise ConfigurationError("entity linking needs the 'pyahocorasick' package") from err
        for field, value, low in (
            ("max_mentions", max_mentions, 1),
            ("context_chars", context_chars, 1),
            ("max_fuzzy_lookups", max_fuzzy_lookups, 0),
            ("max_contexts", max_contexts, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigurationError(f"Linker {field} must be an integer >= {low}, got {value!r}")
        if fuzzy_threshold is not None and not 0 < fuzzy_threshold <= 100:
            raise ConfigurationError(f"Linker fuzzy_threshold must be in (0, 100] or None, got {fuzzy_threshold!r}")
        self.embedder = embedder
        self.type_priors = dict(type_priors or {})
        self.fuzzy_threshold = fuzzy_threshold
        self.max_mentions = max_mentions
        self.context_chars = context_chars
        self.max_fuzzy_lookups = max_fuzzy_lookups
        self.max_contexts = max_contexts
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
        # (n-gram key length, first letter) -> (alias keys a fuzzy match may have, their character
        # masks, their lengths)
        self._len_cache: dict[tuple[int, str], tuple[list[str], np.ndarray, np.ndarray]] = {}
        self._emb_cache: dict[str, np.ndarray] = {}
        self._fuzzy_cache: dict[str, str | None] = {}  # n-gram key -> best alias key (None: no match)

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
            Non-overlapping mentions ordered by position (at most ``max_mentions``).
        """
        return self.link_many([text], min_score=min_score)[0]

    def link_many(self, texts: Sequence[str], *, min_score: float = 0.6) -> list[list[Mention]]:
        """Find entity mentions in each of ``texts`` (as :meth:`link`, one embedder call for all).

        Args:
            texts: Free texts.
            min_score: As for :meth:`link`.

        Returns:
            The mentions of each text, in input order.
        """
        found = [self._spans(t, min_score) for t in texts]
        queries: dict[str, int] = {}  # context -> row of the query matrix (equal contexts share one)
        rows: list[int | None] = []
        for text, spans in zip(texts, found, strict=True):
            first = next((sp for sp in spans if len(sp[2]) > 1), None)
            if first is None or self.embedder is None:
                rows.append(None)
                continue
            ctx = self._context(text, first[0], first[1])
            if ctx not in queries and len(queries) >= self.max_contexts:
                rows.append(None)  # over the batch's embedding budget: type prior alone
                continue
            rows.append(queries.setdefault(ctx, len(queries)))
        q = self._embed_queries(list(queries), [i for sp in found for s in sp if len(s[2]) > 1 for i in s[2]])
        out = []
        ranks: dict[tuple[tuple[str, ...], int | None], list[tuple[str, float]]] = {}
        for text, spans, row in zip(texts, found, rows, strict=True):
            qv = q[row] if q is not None and row is not None else None
            mentions = []
            for start, end, ids, score, method in spans:
                if len(ids) > 1:
                    memo = (tuple(ids), row if qv is not None else None)  # a repeated name ranks once
                    ranked = ranks.get(memo) or ranks.setdefault(memo, self._disambiguate(ids, qv))
                else:
                    ranked = [(ids[0], 1.0)]
                info = self._info[ranked[0][0]]
                mentions.append(
                    Mention(
                        start,
                        end,
                        text[start:end],
                        ranked[0][0],
                        info.type,
                        info.name,
                        round(score, 4),  # span confidence; which entity is in ``candidates``
                        method,
                        tuple(ranked) if len(ranked) > 1 else (),
                    )
                )
            out.append(mentions)
        return out

    def _spans(self, text: str, min_score: float) -> list[_Span]:
        """The kept spans of one text, by position: found, overlaps resolved, filtered, capped."""
        if not text or not self._info:
            return []
        spans: list[_Span] = []
        for m in _CASHTAG.finditer(text):
            ids = self._by_symbol.get(m.group(1).upper())
            if ids:
                spans.append((m.start(), m.end(), ids, 1.0, "cashtag"))
        for m in _SYMBOL.finditer(text):
            sym = m.group(1)
            ids = self._by_symbol.get(sym)
            if ids and sym not in _SYMBOL_WORDS and not _EXCHANGE_PREFIX.match(text, m.end()):
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
                if _EXCHANGE_PREFIX.match(text, o_end):
                    continue
                if surface in self._by_symbol and surface not in _SYMBOL_WORDS:
                    continue  # "DOW" is Dow Inc.'s ticker (the symbol rule), not the word alias "Dow" (the index)
                # a lower-case single word is often an ordinary word ("target", "visa")
                score = LOWERCASE_WORD_SCORE if " " not in key and surface.islower() else 1.0
                spans.append((o_start, o_end, self._by_key[key], score, "alias"))
        kept = _kept(spans, len(text), min_score)
        if self.fuzzy_threshold is not None and self.max_fuzzy_lookups:
            # fuzzy spans overlap no exact candidate (nor each other), so they leave the exact
            # choice as it is; one starting past the last exact mention that can be returned
            # cannot be returned either
            until = kept[self.max_mentions - 1][1] if len(kept) >= self.max_mentions else len(text)
            fuzzy = [sp for sp in self._fuzzy(text, spans, until) if round(sp[3], 4) >= min_score]
            if fuzzy:
                kept = sorted(kept + fuzzy, key=lambda sp: sp[0])
        return kept[: self.max_mentions]

    def _fuzzy(self, text: str, exact: list[_Span], until: int) -> list[_Span]:
        """Fuzzy spans of capitalised n-grams starting before ``until`` that no exact span overlaps.

        At most ``max_fuzzy_lookups`` n-grams reach the dictionary (cached or scanned):
        in a long text the fallback covers its first proper nouns only.
        """
        from rapidfuzz import fuzz

        covered = _occupancy(exact, len(text))
        out: list[_Span] = []
        budget = self.max_fuzzy_lookups
        words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
        for i in range(len(words)):
            if words[i][0] >= until:
                break
            if covered[words[i][0]]:
                continue  # every n-gram starting here overlaps an exact span
            w0 = words[i][2].lstrip("\"'(")
            if not w0[:1].isupper():
                continue  # proper-noun heuristic keeps the fallback cheap and precise
            for n in (3, 2, 1):
                if i + n > len(words):
                    continue
                start, end = words[i][0], words[i + n - 1][1]
                while end > start and not text[end - 1].isalnum():
                    end -= 1
                if covered.find(1, start, end) != -1:
                    continue
                key = normalize_key(text[start:end])
                if len(key) < 5 or key in _STOPWORDS or key in self._by_key:
                    continue
                if budget == 0:
                    return out
                budget -= 1
                best = self._fuzzy_match(key)
                if best is not None:
                    score = fuzz.ratio(key, best)
                    out.append((start, end, self._by_key[best], 0.9 * score / 100.0, "fuzzy"))
                    covered[start:end] = b"\x01" * (end - start)
                    break
        return out

    def _fuzzy_match(self, key: str) -> str | None:
        """The alias key closest to ``key`` at or above the threshold (memoised), or None."""
        from rapidfuzz import fuzz, process

        if key in self._fuzzy_cache:
            return self._fuzzy_cache[key]
        keys, masks, lengths = self._similar_length(len(key), key[0])
        # a character in one key and not the other costs at least one insertion or deletion, so
        # keys differing in more characters than the threshold allows cannot match: most n-grams
        # of a headline have no candidate left and skip the scan (same result, fewer comparisons)
        slack = 1.0 - (self.fuzzy_threshold or 0.0) / 100.0
        differ = np.bitwise_count(masks ^ _char_mask(key))
        near = [keys[i] for i in np.flatnonzero(differ <= slack * (len(key) + lengths) + 1e-9)]
        # a plural or singular is another word, not a misspelling: "Targets" is not Target, "Water" not Waters
        near = [k for k in near if k != key + "s" and key != k + "s"]
        hit = None
        if near:
            hit = process.extractOne(key, near, scorer=fuzz.ratio, score_cutoff=self.fuzzy_threshold)
        best = hit[0] if hit else None
        if len(self._fuzzy_cache) >= _FUZZY_CACHE_SIZE:
            self._fuzzy_cache.clear()
        self._fuzzy_cache[key] = best
        return best

    def _similar_length(self, n: int, first: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Alias keys (in dictionary order) starting with ``first`` whose length allows a ratio >= the
        threshold with a length-``n`` key, with their character masks and lengths. Misspellings keep
        the first letter ("News Corporation" is not Loews Corporation), which also leaves only
        that letter's keys to compare."""
        found = self._len_cache.get((n, first))
        if found is None:
            # ratio = 100 * (1 - indel / (n + m)) and indel >= |n - m|
            slack = 1.0 - (self.fuzzy_threshold or 0.0) / 100.0
            keys = [k for k in self._keys if k[0] == first and abs(n - len(k)) <= slack * (n + len(k)) + 1e-9]
            masks = np.array([_char_mask(k) for k in keys], dtype=np.uint64)
            found = (keys, masks, np.array([len(k) for k in keys], dtype=np.float64))
            if len(self._len_cache) < _FUZZY_CACHE_SIZE:
                self._len_cache[n, first] = found
        return found

    def _context(self, text: str, start: int, end: int) -> str:
        """About ``context_chars`` of ``text`` around ``text[start:end]``, cut at spaces."""
        width = self.context_chars
        if len(text) <= width:
            return text
        a = max(0, min(start - (width - (end - start)) // 2, len(text) - width))
        b = min(len(text), max(a + width, end))
        if a > 0:
            cut = text.find(" ", a, start)
            a = cut + 1 if cut != -1 else a
        if b < len(text):
            cut = text.rfind(" ", end, b)
            b = cut if cut != -1 else b
        return text[a:b]

    def _embed_queries(self, contexts: list[str], candidate_ids: list[str]) -> np.ndarray | None:
        """Unit vectors of ``contexts`` (one embedder call), caching the candidates' vectors too."""
        if self.embedder is None or not contexts:
            return None
        missing = list(dict.fromkeys(i for i in candidate_ids if i not in self._emb_cache))
        vecs = np.asarray(self.embedder(contexts + [self._info[i].context for i in missing]), float)
        vecs = vecs / np.where((norms := np.linalg.norm(vecs, axis=1, keepdims=True)) > 0, norms, 1.0)
        for i, v in zip(missing, vecs[len(contexts) :], strict=True):
            self._emb_cache[i] = v
        return vecs[: len(contexts)]

    def _disambiguate(self, ids: list[str], q: np.ndarray | None) -> list[tuple[str, float]]:
        prior = np.array([self.type_priors.get(self._info[i].type, 1.0) for i in ids], float)
        score = prior / prior.sum() if prior.sum() > 0 else np.full(len(ids), 1 / len(ids))
        if q is not None:
            sims = np.array([float(self._emb_cache[i] @ q) for i in ids])
            sim_w = np.exp(sims * 10.0)
            score = 0.3 * score + 0.7 * sim_w / sim_w.sum()
        order = np.argsort(-score, kind="stable")
        return [(ids[k], round(float(score[k]), 4)) for k in order]


def _char_mask(key: str) -> np.uint64:
    """The characters of ``key`` as bits of a 64-bit mask (``ord % 64``: two characters may share a
    bit, which only makes the mask difference a lower count, never a higher one)."""
    bits = 0
    for c in set(key):
        bits |= 1 << (ord(c) % 64)
    return np.uint64(bits)


def _occupancy(spans: Iterable[_Span], n: int) -> bytearray:
    """One byte per character of the text: 1 where some span covers it."""
    occ = bytearray(n)
    for s, e, *_ in spans:
        occ[s:e] = b"\x01" * (e - s)
    return occ


def _kept(spans: list[_Span], n: int, min_score: float) -> list[_Span]:
    """The spans that survive overlap resolution and score at least ``min_score``, by position."""
    return [sp for sp in _resolve_overlaps(spans, n) if round(sp[3], 4) >= min_score]


def _resolve_overlaps(spans: list[_Span], n: int) -> list[_Span]:
    """Keep the best span of every overlapping group, by position.

    Best: method (cashtag, alias, symbol, fuzzy), then longer, then better scored,
    then earlier. An occupancy array makes each check cost the span's length, not
    the number of spans already taken.
    """
    spans = sorted(spans, key=lambda s: (_METHOD_ORDER[s[4]], -(s[1] - s[0]), -s[3], s[0]))
    occ = bytearray(n)
    chosen = []
    for sp in spans:
        s, e = sp[0], sp[1]
        if occ.find(1, s, e) != -1:
            continue
        occ[s:e] = b"\x01" * (e - s)
        chosen.append(sp)
    return sorted(chosen, key=lambda s: s[0])


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

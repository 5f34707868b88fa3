"""The retriever: dense, lexical and graph rankings, fused, deduplicated, cited, within a token budget."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kgnlp.errors import ConfigurationError, ValidationError
from retrieval.chunking import count_tokens
from retrieval.embedder import Embedder
from retrieval.fusion import rrf, weighted
from retrieval.graph_context import GraphContext, GraphHits
from retrieval.lexical import BM25Index
from retrieval.types import Evidence, Mode, Passage
from retrieval.vector_index import VectorIndex

__all__ = ["MODES", "Retriever", "RetrieverConfig"]

MODES: tuple[str, ...] = ("dense", "lexical", "graph", "hybrid", "hybrid+graph")
_SPACE = re.compile(r"\s+")


@dataclass(slots=True)
class RetrieverConfig:
    """How one app retrieves (validated on construction).

    Args:
        fusion: ``rrf`` (rank-based) or ``weighted`` (min-max normalised scores).
        rrf_k: RRF constant.
        weights: Weight per ranking (``dense``, ``lexical``, ``graph``) for either fusion.
        candidates: Results each single ranking contributes before fusion.
        token_budget: Approximate tokens of evidence text returned in total.
        max_facts: Graph facts appended in graph modes.
        vote_depth: In ``hybrid+graph``, how many fused dense+BM25 passages vote for graph entities.
    """

    fusion: Literal["rrf", "weighted"] = "rrf"
    rrf_k: float = 60.0
    weights: dict[str, float] = field(default_factory=lambda: {"dense": 1.0, "lexical": 1.0, "graph": 1.0})
    candidates: int = 50
    token_budget: int = 1500
    max_facts: int = 3
    vote_depth: int = 10

    def __post_init__(self) -> None:
        if self.fusion not in ("rrf", "weighted"):
            raise ConfigurationError(f"retrieval fusion must be 'rrf' or 'weighted', got {self.fusion!r}")
        if self.rrf_k < 0:
            raise ConfigurationError(f"retrieval rrf_k must be >= 0, got {self.rrf_k!r}")
        bad = set(self.weights) - {"dense", "lexical", "graph"}
        if bad or any(w < 0 for w in self.weights.values()):
            raise ConfigurationError(f"retrieval weights: names dense|lexical|graph, values >= 0; got {self.weights}")
        if self.candidates < 1:
            raise ConfigurationError(f"retrieval candidates must be >= 1, got {self.candidates!r}")
        if self.token_budget < 1:
            raise ConfigurationError(f"retrieval token_budget must be >= 1, got {self.token_budget!r}")
        if self.max_facts < 0:
            raise ConfigurationError(f"retrieval max_facts must be >= 0, got {self.max_facts!r}")


class Retriever:
    """Answers queries over one corpus.

    Args:
        passages: The indexed passages by key.
        embedder: Query embedder (the model that embedded the passages).
        dense: Vector index over the passage keys.
        lexical: BM25 index over the passage keys.
        vectors: Optional ``(keys, matrix)`` of passage vectors, used to order graph-selected
            passages by similarity (without it they keep graph order).
        graph: Optional graph context (enables ``graph`` and ``hybrid+graph``).
        config: Fusion and budget settings.
        name: Corpus name (for messages).
    """

    def __init__(
        self,
        passages: Mapping[int, Passage],
        embedder: Embedder,
        dense: VectorIndex,
        lexical: BM25Index,
        *,
        vectors: tuple[np.ndarray, np.ndarray] | None = None,
        graph: GraphContext | None = None,
        config: RetrieverConfig | None = None,
        name: str = "",
    ) -> None:
        self.passages = dict(passages)
        self.embedder = embedder
        self.dense = dense
        self.lexical = lexical
        self.graph = graph
        self.config = config or RetrieverConfig()
        self.name = name
        self._by_doc: dict[str, list[int]] = {}
        for k, p in self.passages.items():
            self._by_doc.setdefault(p.doc_id, []).append(k)
        self._vec_row: dict[int, int] = {}
        self._vecs: np.ndarray | None = None
        if vectors is not None:
            keys, mat = vectors
            self._vec_row = {int(k): i for i, k in enumerate(keys)}
            self._vecs = mat

    def __len__(self) -> int:
        return len(self.passages)

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this retriever supports (graph modes need a graph)."""
        return MODES if self.graph is not None else ("dense", "lexical", "hybrid")

    # ------------------------------------------------------------------ rankings
    def _dense(self, qv: np.ndarray, n: int) -> list[tuple[int, float]]:
        scores, keys = self.dense.search(qv.reshape(1, -1), n)
        return [(int(k), float(s)) for k, s in zip(keys[0], scores[0], strict=True) if k >= 0]

    def _lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        scores, keys = self.lexical.search(query, n)
        return [(int(k), float(s)) for k, s in zip(keys, scores, strict=True)]

    def _graph(
        self, query: str, qv: np.ndarray, n: int, hit_docs: list[str] | None = None, lexical: bool = False
    ) -> tuple[list[tuple[int, float]], GraphHits]:
        if self.graph is None:
            return [], GraphHits()
        hits = self.graph.collect(query, query_vector=qv, hit_docs=hit_docs, lexical=lexical)
        cand: list[tuple[int, float]] = []
        for doc_id, gscore in hits.documents:
            for key in self._by_doc.get(doc_id, ()):
                cand.append((key, gscore))
        if not cand:
            return [], hits
        if self._vecs is not None:
            # within the graph's selection, order by similarity to the query
            rows = [self._vec_row.get(k) for k, _ in cand]
            sims = [float(self._vecs[r] @ qv) if r is not None else -1.0 for r in rows]
            cand = [(k, g + 0.5 * s) for (k, g), s in zip(cand, sims, strict=True)]
        cand.sort(key=lambda kv: -kv[1])
        return cand[:n], hits

    def rankings(self, query: str, mode: Mode, n: int | None = None) -> tuple[list[tuple[int, float]], GraphHits]:
        """The fused passage ranking for a mode (before dedupe and budget).

        Args:
            query: Free text.
            mode: One of :data:`MODES`.
            n: Candidates per single ranking (default ``config.candidates``).

        Returns:
            ``([(passage key, score), ...], graph hits)``.
        """
        if mode not in MODES:
            raise ValidationError(f"mode must be one of {MODES}, got {mode!r}")
        if mode in ("graph", "hybrid+graph") and self.graph is None:
            raise ValidationError(f"mode {mode!r} needs a knowledge graph; corpus {self.name!r} has none")
        n = n or self.config.candidates
        need_vec = mode != "lexical"
        qv = self.embedder.embed([query])[0] if need_vec else np.zeros(0, np.float32)
        runs: dict[str, list[tuple[int, float]]] = {}
        hits = GraphHits()
        if mode in ("dense", "hybrid", "hybrid+graph"):
            runs["dense"] = self._dense(qv, n)
        if mode in ("lexical", "hybrid", "hybrid+graph"):
            runs["lexical"] = self._lexical(query, n)
        hit_docs = None
        if mode == "hybrid+graph":
            # the passages dense+BM25 agree on vote (through the graph) for the entities the query is about
            first = self._fuse(runs)
            hit_docs = list(
                dict.fromkeys(self.passages[k].doc_id for k, _ in first[: self.config.vote_depth] if k in self.passages)
            )
        if mode in ("graph", "hybrid+graph"):
            # the hybrid mode's entity vote reads the query's words as well as its embedding
            runs["graph"], hits = self._graph(query, qv, n, hit_docs, lexical=mode == "hybrid+graph")
        return self._fuse(runs), hits

    def _fuse(self, runs: dict[str, list[tuple[int, float]]]) -> list[tuple[int, float]]:
        if len(runs) == 1:
            return next(iter(runs.values()))
        w = {k: v for k, v in self.config.weights.items() if k in runs}
        if self.config.fusion == "rrf":
            return rrf(runs, k=self.config.rrf_k, weights=w)
        return weighted(runs, weights=w)

    # ------------------------------------------------------------------ evidence
    def retrieve(self, query: str, k: int = 5, mode: Mode = "hybrid") -> list[Evidence]:
        """Retrieve cited evidence for a query.

        Args:
            query: Free text (non-blank).
            k: Passages wanted (facts come on top in graph modes, up to ``config.max_facts``).
            mode: ``dense``, ``lexical``, ``graph``, ``hybrid`` (dense + BM25) or ``hybrid+graph``.

        Returns:
            Evidence, best first, deduplicated by passage and by text, cited 1..n,
            the total text within ``config.token_budget``.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query must be a non-empty string")
        if k < 1:
            raise ValidationError(f"k must be >= 1, got {k!r}")
        ranked, hits = self.rankings(query, mode, max(self.config.candidates, k))
        out: list[Evidence] = []
        seen_text: set[str] = set()
        budget = self.config.token_budget
        for key, score in ranked:
            if len(out) >= k:
                break
            p = self.passages.get(key)
            if p is None:
                continue
            h = hashlib.sha1(_SPACE.sub(" ", p.text.strip().lower()).encode()).hexdigest()
            if h in seen_text:
                continue
            seen_text.add(h)
            text, budget = _fit(p.text, budget, first=not out)
            if text is None:
                break
            meta = dict(p.metadata)
            meta.setdefault("doc_id", p.doc_id)
            if p.entities:
                meta.setdefault("entities", list(p.entities))
            out.append(Evidence("passage", text, round(float(score), 6), p.id, 0, meta))
        if mode in ("graph", "hybrid+graph"):
            for fact in hits.facts[: self.config.max_facts]:
                text, budget = _fit(fact.text, budget, first=False)
                if text is None:
                    break
                out.append(Evidence("fact", text, round(float(fact.score), 6), fact.source_id, 0, fact.metadata))
        for i, e in enumerate(out, start=1):
            e.citation = i
        return out

    def ranked_ids(self, query: str, mode: Mode, n: int = 10) -> list[str]:
        """Document ids ranked for evaluation (distinct documents, best first).

        Args:
            query: Free text.
            mode: Retrieval mode.
            n: How many document ids.

        Returns:
            Up to ``n`` document ids.
        """
        ranked, _ = self.rankings(query, mode, max(self.config.candidates, n))
        out: list[str] = []
        for key, _s in ranked:
            d = self.passages[key].doc_id if key in self.passages else None
            if d is not None and d not in out:
                out.append(d)
                if len(out) == n:
                    break
        return out

    def warm(self) -> bool:
        """Do the one-off work of the graph modes now (the intent linker's embeddings and fits).

        Returns False, having logged why, when that fails: the linker tries again on first use, so
        a service start or a corpus swap must not fail on it.
        """
        voter = getattr(self.graph, "example_voter", None)
        if voter is None:
            return True
        try:
            voter.prepare()
        except Exception as e:  # any failure recurs, visibly, on first use
            logging.getLogger(__name__).warning("warming the graph intent linker failed (%s); it retries on use", e)
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """A summary for health endpoints and the CLI."""
        return {
            "name": self.name,
            "passages": len(self.passages),
            "modes": list(self.modes),
            "fusion": self.config.fusion,
            "index": getattr(self.dense, "kind", type(self.dense).__name__),
        }


def _fit(text: str, budget: int, *, first: bool) -> tuple[str | None, int]:
    """Take ``text`` if it fits in ``budget`` tokens; the first item is truncated instead of dropped."""
    n = count_tokens(text)
    if n <= budget:
        return text, budget - n
    if not first or budget <= 0:
        return None, budget
    words = text.split()
    kept: list[str] = []
    used = 0
    for w in words:
        c = count_tokens(w)
        if used + c > budget:
            break
        kept.append(w)
        used += c
    return (" ".join(kept) + " …") if kept else None, 0

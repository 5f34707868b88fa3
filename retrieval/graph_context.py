"""Graph context for a query: link entities, expand k hops, render facts with provenance.

Seeds come from up to four sources: the entity linker (exact/fuzzy mentions in the
query); an ``EntityRanker`` that scores entities by embedding similarity to the query
(name, description and example questions), which finds the intent behind a
paraphrase that names no entity; an ``ExampleVoter`` — k-nearest-neighbour voting
from the query to the example texts the graph stores for its entities (the
``examples`` attribute and the ``question`` of every attached document), which is
the strongest signal where those exist, since query-to-question similarity says
far more than query-to-answer similarity; and, in ``hybrid+graph``, the entities
that the passages found by dense+BM25 are attached to. From the seeds the graph
yields (1) facts — relations rendered as short sentences, each with its source —
and (2) documents attached to the seeds (``ANSWERS``/``ABOUT``/``MENTIONS`` edges),
which the retriever maps back to indexed passages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kgnlp.errors import ConfigurationError, KgnlpError, NotFoundError
from retrieval.embedder import Embedder
from retrieval.types import Evidence

__all__ = ["EntityRanker", "ExampleVoter", "GraphContext", "LinkerLike", "Seed", "render_fact"]

log = logging.getLogger("kgnlp.retrieval")

DOC_RELATIONS = ("ANSWERS", "ABOUT", "MENTIONS")


class LinkerLike(Protocol):
    """What graph context needs from ``kg.linking.Linker``."""

    def link(self, text: str, *, min_score: float = ...) -> list[Any]:
        """Mentions with ``entity_id`` and ``score``."""
        ...


@dataclass(frozen=True, slots=True)
class Seed:
    """An entity the query is about, with how it was found."""

    entity_id: str
    score: float
    method: str  # "link:<linker method>" or "embedding"
    surface: str = ""


def render_fact(head: str, rel_type: str, tail: str) -> str:
    """Render a relation as a short sentence: ``("cancel order", "IN_CATEGORY", "order")`` →
    ``"cancel order — in category → order."``.

    Args:
        head: Display name of the head entity.
        rel_type: Relation type (``UPPER_SNAKE`` or free text).
        tail: Display name of the tail entity.

    Returns:
        The sentence.
    """
    verb = rel_type.replace("_", " ").strip().lower()
    return f"{head} — {verb} → {tail}."


class EntityRanker:
    """Scores graph entities against a query by embedding similarity.

    Each entity is represented by its name, description and (when present) the
    ``examples`` attribute (example questions), each embedded separately; an
    entity's score is its best-matching representation.

    Args:
        entities: The candidate entities (e.g. intents and categories).
        embedder: The embedder (the same one as the dense index is fine).
    """

    def __init__(self, entities: Iterable[Any], embedder: Embedder) -> None:
        self.embedder = embedder
        self._entities = list(entities)
        self._matrix: np.ndarray | None = None
        self._owner: np.ndarray | None = None

    def _ensure(self) -> None:
        if self._matrix is not None:
            return
        texts: list[str] = []
        owner: list[int] = []
        for i, e in enumerate(self._entities):
            name = e.display_name() if hasattr(e, "display_name") else str(e.name or e.id)
            reps = [name, f"{name}. {e.description}".strip()]
            ex = (e.attributes or {}).get("examples")
            if isinstance(ex, list):
                reps += [str(x) for x in ex if isinstance(x, str) and x.strip()]
            for r in dict.fromkeys(reps):
                texts.append(r)
                owner.append(i)
        self._matrix = self.embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)
        self._owner = np.asarray(owner, dtype=np.int64)

    def rank(self, query: str, k: int = 3, *, query_vector: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Return the ``k`` best entities for ``query``.

        Args:
            query: Free text.
            k: How many entities.
            query_vector: The query's embedding when the caller has it already.

        Returns:
            ``[(entity_id, cosine), ...]``, best first.
        """
        self._ensure()
        assert self._matrix is not None and self._owner is not None
        if not len(self._owner) or k < 1:
            return []
        q = query_vector if query_vector is not None else self.embedder.embed([query])[0]
        sims = self._matrix @ q
        best = np.full(len(self._entities), -np.inf, dtype=np.float32)
        np.maximum.at(best, self._owner, sims)
        top = np.argsort(-best, kind="stable")[:k]
        return [(self._entities[i].id, float(best[i])) for i in top if np.isfinite(best[i])]


class ExampleVoter:
    """Finds the entities behind a query from their example texts (say, the questions an intent
    answers); every example belongs to one or more entities.

    ``method="linear"`` (the default) fits a multinomial logistic regression on the examples
    (scikit-learn, once, at first use): on the query's embedding, or — for ``vote(...,
    lexical=True)``, the hybrid modes — on the embedding next to word TF-IDF features. An
    entity's score is its probability. ``method="knn"``: the ``k`` most similar examples
    (cosine) vote for their entities with weight ``exp((cos - cos_best) / temperature)``; an
    entity's score is its share of the votes (also the fallback with a single entity).

    On a validation split carved from the Bitext training rows (never the benchmark queries),
    retrieval R@1 of the graph / hybrid+graph modes (``benchmarks/retrieval.py --validate
    [--seed 1] [--voter knn]``): k-NN 0.971 / 0.972 and 0.961 / 0.963, linear 0.986 / 0.992 and
    0.992 / 0.994; hence the default. C=10 / C=100 came from a one-off grid on the same split.

    Args:
        examples: ``(entity_id, text)`` pairs; blank texts and repeated pairs are skipped.
        embedder: The embedder (the same one as the dense index is fine).
        method: ``linear`` or ``knn``.
        k: Neighbours that vote (``knn``).
        temperature: Softness of the vote weights (``knn``; > 0, smaller trusts the nearest more).
        c_dense: Inverse L2 strength of the linear model on embeddings.
        c_hybrid: Inverse L2 strength of the linear model on embeddings + TF-IDF.

    Raises:
        ConfigurationError: an unknown method, ``k < 1``, ``temperature <= 0`` or a C ``<= 0``.
    """

    def __init__(
        self,
        examples: Iterable[tuple[str, str]],
        embedder: Embedder,
        *,
        method: str = "linear",
        k: int = 5,
        temperature: float = 0.1,
        c_dense: float = 10.0,
        c_hybrid: float = 100.0,
    ) -> None:
        if method not in ("linear", "knn"):
            raise ConfigurationError(f"example voter method must be 'linear' or 'knn', got {method!r}")
        if k < 1:
            raise ConfigurationError(f"example voter k must be >= 1, got {k!r}")
        if temperature <= 0:
            raise ConfigurationError(f"example voter temperature must be > 0, got {temperature!r}")
        if c_dense <= 0 or c_hybrid <= 0:
            raise ConfigurationError(f"example voter C must be > 0, got {c_dense!r} / {c_hybrid!r}")
        self.embedder = embedder
        self.method = method
        self.k = k
        self.temperature = temperature
        self.c_dense, self.c_hybrid = c_dense, c_hybrid
        owners: dict[str, list[str]] = {}
        for eid, text in examples:
            t = text.strip() if isinstance(text, str) else ""
            if t and eid not in owners.setdefault(t, []):
                owners[t].append(eid)
        self._texts = list(owners)
        self._owners = [owners[t] for t in self._texts]
        self._matrix: np.ndarray | None = None
        self._models: dict[bool, Any] = {}  # lexical? -> (tfidf or None, classifier)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._texts)

    @classmethod
    def from_store(
        cls,
        store: Any,
        embedder: Embedder,
        *,
        entity_types: Sequence[str],
        doc_type: str = "Document",
        doc_relations: Sequence[str] = DOC_RELATIONS,
        examples_attr: str = "examples",
        question_attr: str = "question",
        method: str = "linear",
        k: int = 5,
        temperature: float = 0.1,
    ) -> ExampleVoter | None:
        """Collect the example texts a graph stores for its entities of ``entity_types``.

        An entity's examples are its ``examples_attr`` attribute (a list of strings) and the
        ``question_attr`` attribute of every ``doc_type`` entity attached to it by one of
        ``doc_relations`` (document → entity).

        Args:
            store: A ``kg.store.GraphStore``.
            embedder: The embedder.
            entity_types: Types of the entities voted for (e.g. ``("Intent",)``).
            doc_type: Entity type of documents.
            doc_relations: Relation types that attach documents to entities.
            examples_attr: Attribute holding an entity's example texts.
            question_attr: Attribute holding the question a document answers.
            method: ``linear`` or ``knn`` (see the class).
            k: Neighbours that vote.
            temperature: Softness of the vote weights.

        Returns:
            The voter, or ``None`` when the graph has no example texts for those types.
        """
        types = set(entity_types)
        rels = set(doc_relations)
        targets: set[str] = set()
        questions: dict[str, str] = {}
        pairs: list[tuple[str, str]] = []
        for e in store.iter_entities():
            attrs = e.attributes or {}
            if e.type in types:
                targets.add(e.id)
                ex = attrs.get(examples_attr)
                if isinstance(ex, list):
                    pairs += [(e.id, x) for x in ex if isinstance(x, str)]
            elif e.type == doc_type and isinstance(attrs.get(question_attr), str):
                questions[e.id] = attrs[question_attr]
        if questions:
            for r in store.iter_relations():
                if r.type in rels and r.tail in targets and r.head in questions:
                    pairs.append((r.tail, questions[r.head]))
        voter = cls(pairs, embedder, method=method, k=k, temperature=temperature)
        return voter if len(voter) else None

    def vote(
        self, query: str, *, query_vector: np.ndarray | None = None, lexical: bool = False
    ) -> list[tuple[str, float]]:
        """Entities behind the query, by their example texts.

        Args:
            query: Free text.
            query_vector: The query's unit-norm embedding when the caller has it already.
            lexical: Also use the query's words (``linear`` only; the hybrid modes).

        Returns:
            ``[(entity_id, score), ...]``, best first; the scores sum to 1 (empty without examples).
        """
        if not self._texts:
            return []
        matrix = self._embedded()
        q = query_vector if query_vector is not None else self.embedder.embed([query])[0]
        model = self._model(lexical) if self.method == "linear" else None
        if model is not None:
            tfidf, clf = model
            x = q.reshape(1, -1)
            if tfidf is not None:
                from scipy.sparse import csr_matrix, hstack

                x = hstack([tfidf.transform([query]), csr_matrix(x)]).tocsr()
            probs = clf.predict_proba(x)[0]
            order = np.argsort(-probs, kind="stable")
            return [(str(clf.classes_[i]), float(probs[i])) for i in order if probs[i] > 0]
        sims = matrix @ q
        k = min(self.k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        best = float(sims[top[0]])
        score: dict[str, float] = {}
        for i in top:
            w = float(np.exp((float(sims[i]) - best) / self.temperature))
            for eid in self._owners[i]:
                score[eid] = score.get(eid, 0.0) + w
        total = sum(score.values()) or 1.0
        return sorted(((eid, s / total) for eid, s in score.items()), key=lambda kv: -kv[1])

    def prepare(self) -> None:
        """Embed the examples and fit the linear models now rather than on the first query
        (a service calls this at start so that its first request is not the slow one)."""
        if not self._texts:
            return
        self._embedded()
        if self.method == "linear":
            self._model(False)
            self._model(True)

    def _embedded(self) -> np.ndarray:
        if self._matrix is None:
            with self._lock:
                if self._matrix is None:
                    self._matrix = self.embedder.embed(self._texts)
        return self._matrix

    def _model(self, lexical: bool) -> tuple[Any, Any] | None:
        """The fitted linear model (fitted once, on first use); ``None`` with a single entity."""
        if lexical not in self._models:
            with self._lock:
                if lexical not in self._models:
                    self._models[lexical] = self._fit(lexical)
        return self._models[lexical]

    def _fit(self, lexical: bool) -> tuple[Any, Any] | None:
        from sklearn.linear_model import LogisticRegression

        rows = [i for i, owners in enumerate(self._owners) for _ in owners]
        labels = [eid for owners in self._owners for eid in owners]
        if len(set(labels)) < 2:
            return None
        x: Any = self._embedded()[rows]
        tfidf = None
        if lexical:
            from scipy.sparse import csr_matrix, hstack
            from sklearn.feature_extraction.text import TfidfVectorizer

            tfidf = TfidfVectorizer(sublinear_tf=True).fit(self._texts)
            x = hstack([tfidf.transform([self._texts[i] for i in rows]), csr_matrix(x)]).tocsr()
        c = self.c_hybrid if lexical else self.c_dense
        clf = LogisticRegression(C=c, max_iter=3000).fit(x, labels)
        return tfidf, clf


@dataclass(slots=True)
class GraphHits:
    """What the graph contributes to one query."""

    seeds: list[Seed] = field(default_factory=list)
    facts: list[Evidence] = field(default_factory=list)
    documents: list[tuple[str, float]] = field(default_factory=list)  # (document entity id, score)


class GraphContext:
    """Link a query to graph entities and collect facts and documents around them.

    Args:
        store: A ``kg.store.GraphStore``.
        linker: A ``kg.linking.Linker`` over the same graph (or anything with ``link(text)``).
        entity_ranker: Optional embedding-similarity ranker adding seeds the linker misses.
        example_voter: Optional k-NN voter over the entities' example texts; when given, its
            winners lead the seeds (see :meth:`collect`).
        hit_vote_weight: With both an example voter and retrieved documents, the share of the
            entity score that comes from the documents' votes (0-1; the rest from the voter).
            The default (with the k-NN voter of the time) and :class:`ExampleVoter`'s were chosen
            on a validation split carved from the Bitext training rows, never on benchmark queries
            (``benchmarks/retrieval.py --validate [--hit-vote-weight W]``).
        hops: Neighbourhood radius for facts (1-3).
        max_facts: Facts kept per query.
        max_seeds: Seeds kept per query.
        min_link_score: Linker confidence threshold.
        min_similarity: Cosine threshold for embedding seeds.
        doc_type: Entity type of documents (never rendered as facts).
        doc_relations: Relation types that attach documents to entities.
        vote_types: Entity types that retrieved documents vote for (see :meth:`collect`);
            ``None`` means every non-document type.
        graph: Name of the graph (recorded in provenance).
    """

    def __init__(
        self,
        store: Any,
        linker: LinkerLike | None,
        *,
        entity_ranker: EntityRanker | None = None,
        example_voter: ExampleVoter | None = None,
        hit_vote_weight: float = 0.05,
        hops: int = 1,
        max_facts: int = 6,
        max_seeds: int = 3,
        min_link_score: float = 0.6,
        min_similarity: float = 0.35,
        doc_type: str = "Document",
        doc_relations: Sequence[str] = DOC_RELATIONS,
        vote_types: Sequence[str] | None = None,
        graph: str = "",
    ) -> None:
        self.store = store
        self.linker = linker
        self.entity_ranker = entity_ranker
        self.example_voter = example_voter
        if not 0.0 <= hit_vote_weight <= 1.0:
            raise ConfigurationError(f"hit_vote_weight must be in [0, 1], got {hit_vote_weight!r}")
        self.hit_vote_weight = hit_vote_weight
        self.hops = hops
        self.max_facts = max_facts
        self.max_seeds = max_seeds
        self.min_link_score = min_link_score
        self.min_similarity = min_similarity
        self.doc_type = doc_type
        self.doc_relations = tuple(doc_relations)
        self.vote_types = tuple(vote_types) if vote_types is not None else None
        self.graph = graph
        self._doc_entities: dict[str, list[str]] = {}

    def entities_of(self, doc_id: str) -> list[str]:
        """Entities a document is attached to (``ANSWERS``/``ABOUT``/``MENTIONS`` out-edges), cached.

        Args:
            doc_id: The document's entity id.

        Returns:
            Entity ids of ``vote_types`` (empty when the document is not in the graph).
        """
        got = self._doc_entities.get(doc_id)
        if got is not None:
            return got
        try:
            sub = self.store.neighbors(doc_id, hops=1, relation_types=self.doc_relations, direction="out", limit=50)
            got = [
                e.id
                for e in sub.entities.values()
                if e.id != doc_id and e.type != self.doc_type and (self.vote_types is None or e.type in self.vote_types)
            ]
        except NotFoundError:
            got = []
        except KgnlpError as e:
            log.warning("graph lookup of %s failed: %s", doc_id, e)
            return []
        if len(self._doc_entities) < 1_000_000:
            self._doc_entities[doc_id] = got
        return got

    def votes(self, hit_docs: Sequence[str], k0: float = 5.0) -> list[Seed]:
        """Entities voted for by retrieved documents: ``Σ 1/(k0 + rank)`` over the hits attached to each.

        Args:
            hit_docs: Document ids retrieved for the query, best first.
            k0: Rank damping (as in reciprocal-rank fusion).

        Returns:
            Seeds with their vote share (0-1), best first.
        """
        score: dict[str, float] = {}
        for rank, d in enumerate(hit_docs, start=1):
            for eid in self.entities_of(d):
                score[eid] = score.get(eid, 0.0) + 1.0 / (k0 + rank)
        total = sum(score.values()) or 1.0
        ranked = sorted(score.items(), key=lambda kv: -kv[1])
        return [Seed(eid, s / total, "votes") for eid, s in ranked]

    def voted(
        self,
        query: str,
        *,
        query_vector: np.ndarray | None = None,
        hit_docs: Sequence[str] | None = None,
        lexical: bool = False,
    ) -> list[Seed]:
        """Entities chosen by votes: the example voter's and the retrieved documents', mixed.

        With both, an entity scores ``(1 - hit_vote_weight) · example share + hit_vote_weight ·
        document share``; with one of them, its share.

        Args:
            query: Free text.
            query_vector: The query embedding, if already computed.
            hit_docs: Documents another retriever found (best first), or ``None``.
            lexical: Let the example voter use the query's words too (hybrid modes).

        Returns:
            Seeds (method ``examples``, ``votes`` or ``examples+votes``), best first; empty when
            neither source is available.
        """
        ex = (
            self.example_voter.vote(query, query_vector=query_vector, lexical=lexical)
            if self.example_voter is not None
            else []
        )
        hv = [(s.entity_id, s.score) for s in self.votes(hit_docs)] if hit_docs else []
        if not ex or not hv:
            method = "examples" if ex else "votes"
            return [Seed(eid, s, method) for eid, s in (ex or hv)]
        score: dict[str, float] = {}
        for eid, s in ex:
            score[eid] = score.get(eid, 0.0) + (1.0 - self.hit_vote_weight) * s
        for eid, s in hv:
            score[eid] = score.get(eid, 0.0) + self.hit_vote_weight * s
        ranked = sorted(score.items(), key=lambda kv: -kv[1])
        return [Seed(eid, s, "examples+votes") for eid, s in ranked]

    def seeds(self, query: str, *, query_vector: np.ndarray | None = None) -> list[Seed]:
        """Entities the query is about: linked mentions first, then embedding neighbours.

        Args:
            query: Free text.
            query_vector: The query embedding, if already computed.

        Returns:
            At most ``max_seeds`` seeds, best first, without duplicates.
        """
        found: dict[str, Seed] = {}
        if self.linker is not None:
            for m in self.linker.link(query, min_score=self.min_link_score):
                if m.entity_id not in found:
                    found[m.entity_id] = Seed(
                        m.entity_id, float(m.score), f"link:{getattr(m, 'method', '')}", getattr(m, "surface", "")
                    )
        if self.entity_ranker is not None:
            for eid, sim in self.entity_ranker.rank(query, self.max_seeds, query_vector=query_vector):
                if sim >= self.min_similarity and eid not in found:
                    found[eid] = Seed(eid, sim, "embedding")
        # linked mentions are exact evidence; embedding seeds follow, best first
        ordered = sorted(found.values(), key=lambda s: (not s.method.startswith("link"), -s.score))
        return ordered[: self.max_seeds]

    def collect(
        self,
        query: str,
        *,
        query_vector: np.ndarray | None = None,
        max_documents: int = 200,
        hit_docs: Sequence[str] | None = None,
        lexical: bool = False,
    ) -> GraphHits:
        """Seeds, rendered facts and attached documents for ``query``.

        Args:
            query: Free text.
            query_vector: The query embedding, if already computed.
            max_documents: Cap on documents returned.
            hit_docs: Documents another retriever found (best first); when given, the
                entities they are attached to are voted on (see :meth:`voted`).
            lexical: Let the example voter use the query's words too (hybrid modes).

        Returns:
            The graph hits (empty when nothing links).
        """
        seeds = self.seeds(query, query_vector=query_vector)
        voted = self.voted(query, query_vector=query_vector, hit_docs=hit_docs, lexical=lexical)[: self.max_seeds]
        if voted:
            have = {s.entity_id for s in voted}
            seeds = (voted + [s for s in seeds if s.entity_id not in have])[: self.max_seeds]
        hits = GraphHits(seeds=seeds)
        seen_facts: set[tuple[str, str, str]] = set()
        docs: dict[str, float] = {}
        for rank, seed in enumerate(hits.seeds):
            try:
                sub = self.store.neighbors(seed.entity_id, hops=self.hops, limit=max(50, max_documents))
            except NotFoundError:
                continue
            except KgnlpError as e:  # a broken graph must not break passage retrieval
                log.warning("graph expansion of %s failed: %s", seed.entity_id, e)
                continue
            weight = seed.score / (1 + rank)
            for r in sub.relations:
                head, tail = sub.entities.get(r.head), sub.entities.get(r.tail)
                if head is None or tail is None:
                    continue
                if r.type in self.doc_relations and head.type == self.doc_type and seed.entity_id == r.tail:
                    docs[head.id] = max(docs.get(head.id, 0.0), weight)
                    continue
                if self.doc_type in (head.type, tail.type) or r.key in seen_facts:
                    continue
                seen_facts.add(r.key)
                hits.facts.append(
                    Evidence(
                        kind="fact",
                        text=render_fact(head.display_name(), r.type, tail.display_name()),
                        score=weight,
                        source_id="|".join(r.key),
                        metadata={
                            "head": r.head,
                            "relation": r.type,
                            "tail": r.tail,
                            "source": r.source or head.source,
                            "graph": self.graph,
                            "seed": seed.entity_id,
                            "seed_method": seed.method,
                        },
                    )
                )
        hits.facts = hits.facts[: self.max_facts]
        hits.documents = sorted(docs.items(), key=lambda kv: -kv[1])[:max_documents]
        return hits

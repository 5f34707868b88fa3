"""Values that flow through retrieval: documents, passages (chunks), hits and evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Document", "Evidence", "EvidenceKind", "Hit", "Mode", "Passage"]

EvidenceKind = Literal["passage", "fact"]
Mode = Literal["dense", "lexical", "graph", "hybrid", "hybrid+graph"]


@dataclass(slots=True)
class Document:
    """A source document before chunking.

    ``metadata`` holds the document's own fields (for Bitext: intent, category,
    the question it answers); it is copied onto every passage cut from it.
    """

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(slots=True)
class Passage:
    """A chunk of a document: the unit that is embedded, indexed and returned.

    ``key`` is the stable integer id used by the vector and lexical indexes;
    ``id`` is the human-readable id (``doc_id`` for single-chunk documents,
    ``doc_id#n`` otherwise). ``entities`` lists the graph entities the chunk mentions.
    """

    key: int
    id: str
    doc_id: str
    text: str
    start: int = 0
    end: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    entities: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the on-disk form in ``passages.jsonl``)."""
        return {
            "key": self.key,
            "id": self.id,
            "doc_id": self.doc_id,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "metadata": self.metadata,
            "entities": self.entities,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Passage:
        """Inverse of :meth:`to_json`."""
        return cls(
            int(d["key"]),
            d["id"],
            d["doc_id"],
            d["text"],
            int(d.get("start", 0)),
            int(d.get("end", 0)),
            dict(d.get("metadata") or {}),
            list(d.get("entities") or []),
        )


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked result of a single retriever (index key and its raw score, higher is better)."""

    key: int
    score: float


@dataclass(slots=True)
class Evidence:
    """One cited piece of context handed to a generator.

    Args:
        kind: ``passage`` (text from the corpus) or ``fact`` (a graph relation rendered as a sentence).
        text: The passage text or the fact sentence.
        score: Fused score, higher is better (comparable within one result list only).
        source_id: Passage id, or ``head|TYPE|tail`` for facts.
        citation: 1-based citation number in the result list.
        metadata: The document's own fields, or the fact's provenance.
    """

    kind: EvidenceKind
    text: str
    score: float
    source_id: str
    citation: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the API form of the evidence."""
        return {
            "kind": self.kind,
            "text": self.text,
            "score": self.score,
            "source_id": self.source_id,
            "citation": self.citation,
            "metadata": self.metadata,
        }

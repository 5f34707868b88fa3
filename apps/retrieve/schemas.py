"""Request and response bodies of ``POST /retrieve``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval.corpus import CORPUS_NAME

__all__ = ["EvidenceOut", "RetrieveRequest", "RetrieveResponse"]


class RetrieveRequest(BaseModel):
    """What to retrieve."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., min_length=1, max_length=2000, pattern=r"\S", description="free-text query")
    k: int = Field(5, ge=1, le=50, description="passages wanted")
    mode: Literal["dense", "lexical", "graph", "hybrid", "hybrid+graph"] = Field(
        "hybrid", description="dense | lexical (BM25) | graph | hybrid (dense+BM25) | hybrid+graph"
    )
    corpus: str = Field("retail", pattern=CORPUS_NAME.pattern, max_length=64, description="corpus name")


class EvidenceOut(BaseModel):
    """One cited piece of evidence."""

    kind: Literal["passage", "fact"]
    text: str
    score: float
    source_id: str
    citation: int
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="the document's own fields (Bitext: intent, category) or a fact's provenance"
    )


class RetrieveResponse(BaseModel):
    """Evidence, best first, cited 1..n."""

    corpus: str
    mode: str
    evidence: list[EvidenceOut]

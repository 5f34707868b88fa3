"""Request and response bodies of the customer-service API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["AnswerRequest", "AnswerResponse", "CitationOut", "Handoff"]

SESSION_ID = r"^[A-Za-z0-9._:-]{1,128}$"
# one customer message, on /cs and on /v1 (model customer-service); the prompt shows 1,000 of them
MAX_MESSAGE_CHARS = 4000


class AnswerRequest(BaseModel):
    model_config = {"extra": "forbid"}

    session_id: str = Field(pattern=SESSION_ID, description="any client-chosen id; letters, digits, . _ : -")
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class CitationOut(BaseModel):
    citation: int
    source_id: str
    snippet: str
    intent: str | None = None


class AnswerResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    intent: str
    confidence: float
    escalate: bool
    reason: str | None = Field(None, description="hand-off reason code when escalate is true")
    slots: dict[str, str]
    mode: Literal["generated", "retrieved", "handoff"]
    fallback: bool = Field(False, description="true when the generator was overloaded or slow")
    fallback_reason: str | None = None
    cited_by: Literal["model", "attributed"] | None = Field(
        None,
        description="generated answers: 'model' when the LLM cited its sources, 'attributed' when the "
        "pipeline appended the source the answer is most similar to",
    )


class Handoff(BaseModel):
    session_id: str
    reason: str
    message: str
    ts: float

"""Request and response bodies of the customer-service API."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["AnswerRequest", "AnswerResponse", "CitationOut", "Handoff", "NewSession", "is_session_id"]

# pydantic and FastAPI match it with Rust's regex (``$`` is the end); in Python, use ``is_session_id``:
# ``re.match`` with ``$`` accepts a trailing newline ("id\n")
SESSION_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_session_id(value: str) -> bool:
    """Whether ``value`` is a session id (the whole string: no trailing newline)."""
    return _SESSION_ID.fullmatch(value) is not None


# one customer message, on /cs and on /v1 (model customer-service); the prompt shows 1,000 of them
MAX_MESSAGE_CHARS = 4000


class AnswerRequest(BaseModel):
    model_config = {"extra": "forbid"}

    session_id: str | None = Field(
        None,
        pattern=SESSION_ID,
        description="the session to continue; letters, digits, . _ : - (1-128). Leave it out to start a new "
        "session: the response's session_id names it. With an API key, any id names a session of that key "
        "(another key's session of the same id is a different one); without a key, only an id the server "
        "issued can be continued (any other: 404)",
    )
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class CitationOut(BaseModel):
    citation: int
    source_id: str
    snippet: str
    intent: str | None = None


class AnswerResponse(BaseModel):
    session_id: str = Field(description="the session this turn belongs to: send it with the next turn")
    answer: str
    citations: list[CitationOut]
    intent: str
    confidence: float
    escalate: bool
    reason: str | None = Field(None, description="hand-off reason code when escalate is true")
    slots: dict[str, str] = Field(
        description="the details (order id, email, …) this message gave; details remembered from earlier "
        "turns are used in the answer but not sent back (known_slots names them)"
    )
    known_slots: list[str] = Field(
        default_factory=list, description="the names of every detail the session holds after this turn"
    )
    mode: Literal["generated", "retrieved", "handoff"]
    fallback: bool = Field(False, description="true when the generator was overloaded or slow")
    fallback_reason: str | None = None
    cited_by: Literal["model", "attributed"] | None = Field(
        None,
        description="generated answers: 'model' when the LLM cited its sources, 'attributed' when the "
        "pipeline appended the source the answer is most similar to",
    )


class NewSession(BaseModel):
    session_id: str = Field(description="a new, unguessable session id of the caller: send it as session_id")


class Handoff(BaseModel):
    session_id: str = Field(description="the session id, as its owner names it")
    owner: str = Field(
        "",
        description="whose session: 'key:<API key id>', 'anon' (a caller without a key), '' (the CLI, or a "
        "session stored before owners were recorded)",
    )
    reason: str
    message: str
    ts: float

"""OpenAI chat-completions wire format (the subset kgnlp serves), validated at the boundary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_REQUEST_CHARS",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessageIn",
]

MAX_MESSAGE_CHARS = 32_000
# all messages of one request together: ~32k tokens of English, the largest context the service
# can be configured with; a longer request cannot fit, and only tokenizing it would cost (the
# context check then refuses anything over the model's own context with 422)
MAX_REQUEST_CHARS = 128_000


class TextPart(BaseModel):
    type: Literal["text"]
    text: str = Field(max_length=MAX_MESSAGE_CHARS)


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] = Field(description="text, or a list of text parts")
    name: str | None = Field(None, max_length=64)

    @field_validator("content")
    @classmethod
    def _size(cls, v: str | list[TextPart]) -> str | list[TextPart]:
        text = v if isinstance(v, str) else "".join(p.text for p in v)
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message content has {len(text)} characters; the limit is {MAX_MESSAGE_CHARS}")
        return v

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Unknown OpenAI fields are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200, description="`base` or `base:adapter`")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=256)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy (the default here)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")
    adapter: str | None = Field(None, max_length=64, description="kgnlp extension: adapter name")
    user: str | None = Field(None, max_length=256)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop takes at most 4 non-empty sequences of at most 64 characters")
        return v

    @model_validator(mode="after")
    def _has_content(self) -> ChatCompletionRequest:
        if not any(m.text.strip() for m in self.messages):
            raise ValueError("messages: at least one message must have non-empty content")
        total = sum(len(m.text) for m in self.messages)
        if total > MAX_REQUEST_CHARS:
            raise ValueError(f"messages have {total} characters in all; the limit is {MAX_REQUEST_CHARS}")
        return self

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    kgnlp: dict[str, Any] | None = Field(None, description="kgnlp extras (citations, intent…); clients may ignore")


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    kgnlp: dict[str, Any] | None = None

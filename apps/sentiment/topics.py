"""Topic tagging by embedding similarity to topic descriptions and example phrasings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kgnlp.errors import ConfigurationError

__all__ = ["DEFAULT_TOPICS", "Topic", "TopicTagger", "load_topics"]

DEFAULT_TOPICS = Path(__file__).resolve().parents[2] / "data" / "finance" / "topics.yaml"

Encode = Callable[[list[str]], np.ndarray]  # texts -> (n, d) L2-normalised rows


@dataclass(frozen=True)
class Topic:
    """A topic: its name, a one-line description, a few example phrasings and keyword patterns."""

    name: str
    description: str
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()  # case-insensitive regular expressions


def load_topics(path: Path | None = None) -> list[Topic]:
    """Read a topics YAML file (``name: {description, examples, keywords}``).

    Raises:
        ConfigurationError: the file is missing or malformed, or a keyword is not a valid regular
            expression (the message names the topic).
    """
    import re

    import yaml

    path = path or DEFAULT_TOPICS
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigurationError(f"cannot read topics file {path}: {e}") from e
    if not isinstance(raw, dict) or not raw:
        raise ConfigurationError(f"topics file {path} must map topic names to {{description, examples}}")
    topics = []
    for name, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("description"), str):
            raise ConfigurationError(f"topic {name!r} in {path} needs a 'description' string")
        examples = spec.get("examples") or []
        if not isinstance(examples, list) or not all(isinstance(x, str) for x in examples):
            raise ConfigurationError(f"topic {name!r} in {path}: 'examples' must be a list of strings")
        keywords = spec.get("keywords") or []
        if not isinstance(keywords, list) or not all(isinstance(x, str) and x for x in keywords):
            raise ConfigurationError(f"topic {name!r} in {path}: 'keywords' must be a list of non-empty strings")
        for k in keywords:
            try:
                re.compile(k)
            except re.error as e:
                raise ConfigurationError(
                    f"topic {name!r} in {path}: keyword {k!r} is not a regular expression: {e}"
                ) from e
        topics.append(Topic(str(name), spec["description"], tuple(examples), tuple(keywords)))
    return topics


class TopicTagger:
    """Tags texts with every topic whose description or examples are close enough.

    A text's score for a topic is its best cosine similarity to the topic's description
    and examples; topics scoring at least ``threshold`` are returned (at most ``max_topics``,
    best first).

    Args:
        topics: the topic set.
        encode: texts -> L2-normalised vectors (e.g. MiniLM).
        threshold: minimum cosine similarity.
        max_topics: cap on topics per text.
    """

    needs_vectors = False  # encodes texts itself

    def __init__(self, topics: Sequence[Topic], encode: Encode, threshold: float = 0.36, max_topics: int = 3) -> None:
        if not topics:
            raise ConfigurationError("TopicTagger needs at least one topic")
        self.topics = list(topics)
        self.encode = encode
        self.threshold = threshold
        self.max_topics = max_topics
        self._anchors: np.ndarray | None = None
        self._owner: np.ndarray | None = None  # anchor row -> topic index

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.topics]

    def _prepare(self) -> tuple[np.ndarray, np.ndarray]:
        if self._anchors is None or self._owner is None:
            texts, owner = [], []
            for i, t in enumerate(self.topics):
                for s in (t.description, *t.examples):
                    texts.append(s)
                    owner.append(i)
            self._anchors = np.asarray(self.encode(texts), dtype=np.float32)
            self._owner = np.asarray(owner)
        return self._anchors, self._owner

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Per-topic similarity, shape ``(len(texts), len(topics))``."""
        anchors, owner = self._prepare()
        if not texts:
            return np.zeros((0, len(self.topics)), dtype=np.float32)
        sims = np.asarray(self.encode(list(texts)), dtype=np.float32) @ anchors.T
        out = np.full((len(texts), len(self.topics)), -1.0, dtype=np.float32)
        for j in range(len(self.topics)):
            out[:, j] = sims[:, owner == j].max(axis=1)
        return out

    def tag(
        self, texts: Sequence[str], scores: np.ndarray | None = None, vectors: np.ndarray | None = None
    ) -> list[list[str]]:
        """Topics of each text, best first (``vectors``, another encoder's, are not used here)."""
        s = self.scores(texts) if scores is None else scores
        result = []
        for row in s:
            order = [j for j in np.argsort(-row) if row[j] >= self.threshold][: self.max_topics]
            result.append([self.topics[j].name for j in order])
        return result

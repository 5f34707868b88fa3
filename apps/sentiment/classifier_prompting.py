"""Zero/few-shot sentiment by prompting the base LLM (SmolLM2-135M-Instruct): a benchmark candidate.

The prompt asks for one word; the probability of each label is the softmax over the next-token
logits of the three label words (``negative``/``neutral``/``positive``, one token each in the
SmolLM2 vocabulary) right after the assistant header. Few-shot puts ``k`` labelled examples per
class in earlier user/assistant turns.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.sentiment.classifier import LABELS
from kgnlp.errors import ModelUnavailableError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PromptClassifier", "pick_shots"]

_SYSTEM = (
    "You classify the sentiment of financial news for an investor. "
    "Answer with exactly one word: positive, neutral or negative."
)


def _user(text: str) -> str:
    return f"Sentence: {text}\nSentiment (positive, neutral or negative):"


def pick_shots(texts: Sequence[str], labels: Sequence[str], k: int, seed: int = 0) -> list[tuple[str, str]]:
    """``k`` short examples per label, interleaved (negative, neutral, positive, ...), seeded."""
    rng = random.Random(seed)
    by: dict[str, list[str]] = {lab: [] for lab in LABELS}
    for t, y in zip(texts, labels, strict=True):
        if len(t) < 160:
            by[y].append(t)
    chosen = {lab: rng.sample(by[lab], min(k, len(by[lab]))) for lab in LABELS}
    return [(chosen[lab][i], lab) for i in range(k) for lab in LABELS if i < len(chosen[lab])]


class PromptClassifier:
    """Label probabilities from an instruction-tuned causal LM's next-token logits.

    Args:
        model_path: the causal-LM folder (e.g. ``KGNLP_HOME/models/smollm2-135m-instruct``).
        shots: few-shot ``(text, label)`` examples (empty: zero-shot).
        batch_size: prompts per forward pass.
    """

    def __init__(self, model_path: Path, shots: Sequence[tuple[str, str]] = (), batch_size: int = 16) -> None:
        self.labels = list(LABELS)
        self.model_path = Path(model_path)
        self.shots = list(shots)
        self.batch_size = batch_size
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self._tok = AutoTokenizer.from_pretrained(str(self.model_path))
            self._model = AutoModelForCausalLM.from_pretrained(str(self.model_path)).eval()
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(f"cannot load the prompting model {self.model_path}: {e}") from e
        self._tok.padding_side = "left"  # the next-token position is the last one of every row
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        ids = [self._tok(w, add_special_tokens=False)["input_ids"] for w in LABELS]
        if any(len(x) != 1 for x in ids):
            raise ModelUnavailableError(f"{self.model_path}: label words are not single tokens ({ids})")
        self._label_ids = [x[0] for x in ids]

    def prompt(self, text: str) -> str:
        """The rendered chat prompt for one text."""
        self._load()
        msgs = [{"role": "system", "content": _SYSTEM}]
        for t, y in self.shots:
            msgs += [{"role": "user", "content": _user(t)}, {"role": "assistant", "content": y}]
        msgs.append({"role": "user", "content": _user(text)})
        return str(self._tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 3)`` probabilities in ``LABELS`` order (length-sorted batches, left padding)."""
        import numpy as np
        import torch

        self._load()
        out = np.zeros((len(texts), len(LABELS)))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self._tok([self.prompt(texts[i]) for i in idx], return_tensors="pt", padding=True)
                logits = self._model(**enc).logits[:, -1, self._label_ids].float()
                out[idx] = torch.softmax(logits, -1).double().numpy()
        return out

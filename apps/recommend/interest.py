"""An LLM interest score for (user history, candidate) pairs: a candidate ranker feature.

A small local causal LM (SmolLM2-135M-Instruct, optionally with a LoRA adapter trained by
``benchmarks/recommend_interest.py train-adapter``) reads a short prompt::

    A listener's favourite artists: A (x, y); B (z); ...
    Answer yes or no: would they enjoy <candidate> (tags)?
    Answer:

and the score is the log-odds ``logit(" yes") − logit(" no")`` of the next token.

The history part (the prefix) is run once per user and its key/value cache is shared by all of
that user's candidates, so scoring 50 candidates costs one prefix plus 50 short suffixes. Prefix
and suffix are tokenised separately (in training too), so a pair scores the same alone or in a
batch. Nothing heavy is imported at module import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from apps.recommend.data import Catalogue

__all__ = ["DEFAULT_ADAPTER", "DEFAULT_MODEL", "InterestScorer", "item_brief", "prompt_parts"]

DEFAULT_MODEL = "smollm2-135m-instruct"  # under kgnlp.files.default_home() / "models"
DEFAULT_ADAPTER = "recommend-interest"  # under kgnlp.files.default_home() / "adapters"


def item_brief(catalogue: Catalogue, i: int, n_tags: int = 2, max_chars: int = 40) -> str:
    """A short item text for prompts: the name and its first ``n_tags`` tags.

    The same fields :meth:`Catalogue.item_text` reads (name, tags), cut short so that ten history
    items fit in ~150 tokens.
    """
    name = catalogue.item_names[i][:max_chars]
    tags = ", ".join(t[:20] for t in catalogue.item_tags[i][:n_tags])
    return f"{name} ({tags})" if tags else name


def prompt_parts(history: Sequence[str], candidate: str, max_history: int = 10) -> tuple[str, str]:
    """The prompt as ``(prefix, suffix)``: the prefix depends on the user only."""
    hist = "; ".join(history[:max_history]) or "none yet"
    prefix = f"A listener's favourite artists: {hist}.\nAnswer yes or no: would they enjoy"
    suffix = f" {candidate}?\nAnswer:"
    return prefix, suffix


class InterestScorer:
    """Scores (history, candidate) pairs with a local causal LM (+ optional LoRA adapter).

    Args:
        model_dir: the local model folder (config, weights, tokenizer); never downloaded.
        adapter_dir: a peft LoRA adapter folder, or None for the raw model.
        max_history: history items kept in the prompt (callers pass the most relevant first).
        batch_size: candidates per forward pass.

    Raises:
        NotFoundError: the model or adapter folder is missing.
    """

    def __init__(self, model_dir: Path, adapter_dir: Path | None = None, max_history: int = 10,
                 batch_size: int = 16) -> None:  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from kgnlp.errors import NotFoundError

        model_dir = Path(model_dir).expanduser()
        if not (model_dir / "config.json").is_file():
            raise NotFoundError(f"no causal LM at {model_dir}")
        self.max_history = max_history
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        self.adapter_dir = None if adapter_dir is None else Path(adapter_dir).expanduser()
        if self.adapter_dir is not None:
            from peft import PeftModel

            if not (self.adapter_dir / "adapter_config.json").is_file():
                raise NotFoundError(f"no LoRA adapter at {self.adapter_dir}")
            model = PeftModel.from_pretrained(model, str(self.adapter_dir), is_trainable=False)
            model = model.merge_and_unload()  # plain weights: no LoRA overhead at inference
        model.eval()
        self.model = model
        self.yes_id, self.no_id = self.answer_ids(self.tokenizer)

    @staticmethod
    def answer_ids(tokenizer: Any) -> tuple[int, int]:
        """Token ids of ``" yes"`` and ``" no"`` (single tokens in SmolLM2's vocabulary)."""
        yes, no = tokenizer.encode(" yes", add_special_tokens=False), tokenizer.encode(" no", add_special_tokens=False)
        if len(yes) != 1 or len(no) != 1:
            raise ValueError(f"' yes'/' no' must be single tokens, got {yes} {no}")
        return yes[0], no[0]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens."""
        return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def score(self, histories: list[list[str]], candidates: list[str]) -> np.ndarray:
        """Log-odds ``logit(" yes") − logit(" no")`` per (history, candidate) pair: ``(n,)`` float32.

        Pairs with the same history (as consecutive or scattered rows) share one prefix pass.
        """
        import torch

        if len(histories) != len(candidates):
            raise ValueError("histories and candidates must have the same length")
        out = np.zeros(len(candidates), np.float32)
        groups: dict[tuple[str, ...], list[int]] = {}
        for k, h in enumerate(histories):
            groups.setdefault(tuple(h[: self.max_history]), []).append(k)
        with torch.inference_mode():
            for hist, rows in groups.items():
                prefix, _ = prompt_parts(list(hist), "", self.max_history)
                suffixes = [prompt_parts(list(hist), candidates[k], self.max_history)[1] for k in rows]
                out[rows] = self._score_group(prefix, suffixes)
        return out

    def _score_group(self, prefix: str, suffixes: list[str]) -> np.ndarray:
        import torch

        pre = self.encode([prefix])[0]
        pre_ids = torch.tensor([pre], dtype=torch.long)
        n_pre = len(pre)
        suf = self.encode(suffixes)
        out = np.zeros(len(suffixes), np.float32)
        body = self.model.model  # the decoder without the LM head: only two vocabulary rows are needed
        cache = body(input_ids=pre_ids, use_cache=True).cache
        w = self.model.get_output_embeddings().weight[[self.yes_id, self.no_id]]  # (2, d)
        for s in range(0, len(suf), self.batch_size):
            chunk = suf[s : s + self.batch_size]
            b, m = len(chunk), max(len(x) for x in chunk)
            ids = torch.full((b, m), int(self.tokenizer.pad_token_id or 0), dtype=torch.long)
            mask = torch.zeros((b, n_pre + m), dtype=torch.long)
            mask[:, :n_pre] = 1
            for r, x in enumerate(chunk):  # right padding: causal attention never looks at later pads
                ids[r, : len(x)] = torch.tensor(x)
                mask[r, n_pre : n_pre + len(x)] = 1
            pos = torch.arange(n_pre, n_pre + m).unsqueeze(0).expand(b, m)
            c = _repeat_cache(cache, b)
            h = body(input_ids=ids, attention_mask=mask, position_ids=pos, cache=c, use_cache=True)
            last = torch.tensor([len(x) - 1 for x in chunk])
            hid = h.last_hidden_state[torch.arange(b), last]  # (b, d), already final-normed
            lg = hid @ w.T
            out[s : s + b] = (lg[:, 0] - lg[:, 1]).float().numpy()
        return out


def _repeat_cache(cache: Any, b: int) -> Any:
    """A copy of a batch-1 key/value cache repeated ``b`` times along the batch axis."""
    import copy

    c = copy.deepcopy(cache)
    c.batch_repeat_interleave(b)
    return c


def full_sequences(tokenizer: Any, histories: list[list[str]], candidates: list[str],
                   max_history: int = 10) -> list[list[int]]:  # fmt: skip
    """Token ids of prefix + suffix (tokenised separately, as :meth:`InterestScorer.score` does)."""
    out = []
    for h, c in zip(histories, candidates, strict=True):
        prefix, suffix = prompt_parts(h, c, max_history)
        enc = tokenizer.encode
        out.append(enc(prefix, add_special_tokens=False) + enc(suffix, add_special_tokens=False))
    return out

"""Self-supervised domain adaptation: masked-LM for encoders, continued causal-LM for decoders.

The result is a model folder that a fine-tuning config can name as its ``model``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kgnlp.errors import ConfigurationError
from kgnlp.files import atomic_dir

__all__ = ["continue_pretraining", "mask_tokens"]


def mask_tokens(input_ids: Any, tokenizer: Any, prob: float = 0.15, generator: Any = None) -> tuple[Any, Any]:
    """BERT masking: ``prob`` of non-special tokens become targets (80% [MASK], 10% random, 10% kept).

    Returns:
        ``(masked input_ids, labels)`` with -100 on non-target positions.
    """
    import torch

    labels = input_ids.clone()
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for sid in tokenizer.all_special_ids:
        special |= input_ids == sid
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & ~special
    labels[~chosen] = -100
    ids = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    ids[chosen & (r < 0.8)] = tokenizer.mask_token_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    ids[rand] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[rand]
    return ids, labels


def continue_pretraining(
    model_path: Path,
    texts: Sequence[str],
    out_dir: Path,
    objective: str = "mlm",
    epochs: float = 1,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_len: int = 64,
    max_steps: int | None = None,
    seed: int = 0,
    *,
    head_warmup_steps: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Adapt a model to unlabelled domain text and save it.

    Args:
        model_path: encoder (``mlm``) or decoder (``clm``) folder.
        texts: unlabelled in-domain texts (e.g. every finance sentence, labels unused).
        out_dir: where the adapted model + tokenizer are written (atomically).
        objective: ``"mlm"`` or ``"clm"``.
        epochs: passes over ``texts`` (a fraction is allowed).
        lr: AdamW learning rate.
        batch_size: texts per step.
        max_len: truncation length.
        max_steps: optional cap on steps.
        seed: shuffling/masking seed.
        head_warmup_steps: first train only the weights the checkpoint did not have (e.g. the MLM
            head of a sentence-transformers encoder) for this many steps, then everything.
        log: where a progress line goes every 50 steps.

    Returns:
        ``{"first_loss", "last_loss", "steps", "new_weights"}`` (losses: mean over the first/last
        10 steps; ``new_weights``: parameters the checkpoint lacked).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    if objective not in ("mlm", "clm"):
        raise ConfigurationError(f"objective: expected 'mlm' or 'clm', got {objective!r}")
    if not texts:
        raise ConfigurationError("continued pre-training needs at least one text")
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if objective == "mlm" and tokenizer.mask_token_id is None:
        raise ConfigurationError(f"objective: 'mlm' needs a tokenizer with a mask token ({model_path} has none)")
    cls = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    model, info = cls.from_pretrained(str(model_path), output_loading_info=True)  # type: ignore[misc]
    missing = set(info.get("missing_keys", ()))
    new_params = [p for n, p in model.named_parameters() if n in missing]
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    per_epoch = math.ceil(len(texts) / batch_size)
    total = math.ceil(epochs * per_epoch)
    total = min(total, max_steps) if max_steps else total
    warm = head_warmup_steps if new_params else 0
    if warm:  # only the new weights move first
        for p in model.parameters():
            p.requires_grad_(False)
        for p in new_params:
            p.requires_grad_(True)
    losses: list[float] = []
    while len(losses) < total:
        order = list(texts)
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            if len(losses) == warm and warm:
                for p in model.parameters():
                    p.requires_grad_(True)
            enc = tokenizer(
                order[s : s + batch_size], truncation=True, max_length=max_len, padding=True, return_tensors="pt"
            )
            if objective == "mlm":
                ids, labels = mask_tokens(enc["input_ids"], tokenizer, generator=gen)
            else:
                ids, labels = enc["input_ids"], enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(input_ids=ids, attention_mask=enc["attention_mask"], labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if log is not None and len(losses) % 50 == 0:
                log(f"pretrain {objective}: step {len(losses)}/{total} loss {sum(losses[-50:]) / 50:.3f}")
            if len(losses) >= total:
                break
    with atomic_dir(Path(out_dir)) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    k = min(10, len(losses))
    return {
        "first_loss": sum(losses[:k]) / k,
        "last_loss": sum(losses[-k:]) / k,
        "steps": float(len(losses)),
        "new_weights": float(sum(p.numel() for p in new_params)),
    }

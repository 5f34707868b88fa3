"""Knowledge distillation: temperature-scaled KL to a teacher plus hard-label cross-entropy.

Classifiers: set ``distill: {teacher: RUN_DIR}`` in a run config; ``models.finetune`` caches
the teacher's logits for the training texts (``teacher_logits.npy``, keyed by a hash of the
texts and teacher) and mixes the two losses. Causal LMs: ``distill_causal_lm`` matches the
student's next-token distribution to the teacher's on a prompt set (shared tokenizer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgnlp.files import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["cached_teacher_logits", "distill_causal_lm", "distillation_loss", "kl_to_teacher"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    ce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``alpha * T² * KL(teacher_T ‖ student_T) + (1 - alpha) * CE(student, labels)``.

    Args:
        student_logits: ``(..., C)``.
        teacher_logits: same shape.
        labels: hard labels (``-100`` ignored), or None for KL only.
        temperature: softening temperature ``T`` (the ``T²`` keeps gradient scale comparable).
        alpha: weight of the KL term.
        ce: a cross-entropy callable (e.g. with class weights); default plain CE.

    Returns:
        A scalar loss.
    """
    import torch.nn.functional as F

    c = student_logits.shape[-1]
    s = student_logits.reshape(-1, c).float()
    t = teacher_logits.reshape(-1, c).float()
    kl = F.kl_div(
        F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True, reduction="none"
    )
    kl_per = kl.sum(-1)
    if labels is not None:
        mask = labels.reshape(-1) != -100
        kl_per = kl_per[mask] if mask.any() else kl_per
    loss = alpha * temperature**2 * kl_per.mean()
    if labels is not None and alpha < 1:
        hard = (
            ce(student_logits, labels) if ce is not None else F.cross_entropy(s, labels.reshape(-1), ignore_index=-100)
        )
        loss = loss + (1 - alpha) * hard
    return loss


def kl_to_teacher(student_logits: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean KL(teacher ‖ student) of two logit arrays (a distillation progress measure)."""
    import torch

    s = torch.as_tensor(student_logits, dtype=torch.float32)
    t = torch.as_tensor(teacher_logits, dtype=torch.float32)
    return float(distillation_loss(s, t, None, temperature, alpha=1.0) / temperature**2)


def cached_teacher_logits(teacher_dir: Path, texts: Sequence[str], cache_dir: Path) -> np.ndarray:
    """Teacher logits for ``texts``, computed once and cached as ``.npy`` under ``cache_dir``.

    Args:
        teacher_dir: a classifier run directory (``models.classify.load_classifier``).
        texts: the student's training texts, in order.
        cache_dir: where ``teacher_logits-<hash>.npy`` lives.

    Returns:
        ``(len(texts), n_labels)`` float32 logits.
    """
    import io

    import numpy as np

    from models.classify import load_classifier

    h = hashlib.sha256(str(Path(teacher_dir).resolve()).encode())
    for t in texts:
        h.update(t.encode() + b"\0")
    path = Path(cache_dir) / f"teacher_logits-{h.hexdigest()[:16]}.npy"
    if path.is_file():
        return np.load(path)
    logits = load_classifier(teacher_dir).logits(list(texts)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, logits)
    atomic_write_bytes(path, buf.getvalue())
    return logits


def distill_causal_lm(
    teacher: Any,
    student: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    steps: int = 50,
    lr: float = 1e-4,
    temperature: float = 2.0,
    batch_size: int = 4,
    max_len: int = 128,
    seed: int = 0,
) -> list[float]:
    """Distil a causal LM into another with the same tokenizer, on a prompt set.

    Token-level KL over every non-pad position (the prompts are the transfer set;
    teacher logits are computed on the fly, they are too large to cache per token).

    Args:
        teacher: causal LM (eval mode, frozen).
        student: causal LM to train in place.
        tokenizer: shared tokenizer (padding side irrelevant: pads are masked).
        prompts: transfer texts.
        steps: optimiser steps.
        lr: AdamW learning rate.
        temperature: softening temperature.
        batch_size: prompts per step.
        max_len: truncation length.
        seed: sampling seed.

    Returns:
        The loss per step.
    """
    import random

    import torch

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rng = random.Random(seed)
    teacher.eval()
    student.train()
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        batch = rng.sample(list(prompts), min(batch_size, len(prompts)))
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_len)
        with torch.no_grad():
            t_logits = teacher(**enc).logits
        s_logits = student(**enc).logits
        mask = enc["attention_mask"].bool()
        loss = distillation_loss(s_logits[mask], t_logits[mask], None, temperature, alpha=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    student.eval()
    return losses

"""Training loop: 1-N or negative sampling, N3/L2, Adam/Adagrad, LR schedule, early stopping.

``train`` fits any ``KGEModel`` on ``KGData.train``, evaluates filtered MRR on
the validation split every ``eval_every`` epochs, keeps the best weights, stops
after ``patience`` evaluations without improvement (or ``max_minutes``), and
can checkpoint to / resume from a folder. Results are reproducible for a given
seed on a given device and thread count.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kg.embeddings.data import KGData
from kg.embeddings.evaluation import FilterIndex, RankingMetrics, evaluate
from kg.embeddings.models import KGEModel
from kgnlp.errors import ConfigurationError
from kgnlp.files import atomic_write_bytes, load_tensors

__all__ = ["TrainConfig", "TrainResult", "pick_device", "seed_everything", "train"]


@dataclass(slots=True)
class TrainConfig:
    """Hyper-parameters of one training run (validated on construction).

    Attributes:
        loss: ``"1-n"`` (cross-entropy over all entities) or ``"negative"``
            (self-adversarial negative sampling, Sun et al. 2019).
        epochs: Maximum number of epochs.
        batch_size: Queries per step (each triple gives a tail and a head query).
        lr: Learning rate.
        optimizer: ``"adagrad"`` or ``"adam"``.
        regularizer: ``"n3"``, ``"l2"`` or ``"none"`` (on the factors used in the batch).
        reg_weight: Regularisation weight.
        label_smoothing: Label smoothing for 1-N.
        num_negatives: Negatives per query (``loss="negative"``).
        adversarial_temperature: Self-adversarial temperature (0: uniform weights).
        lr_schedule: ``"none"``, ``"plateau"`` (halve on stalled MRR), ``"cosine"``, ``"exponential"``.
        lr_decay: Per-epoch factor for ``"exponential"``.
        eval_every: Validate every this many epochs.
        patience: Stop after this many validations without improvement (0: never).
        valid_max_triples: Validate on at most this many triples (``None``: all).
        max_minutes: Wall-clock cap on training (``None``: none).
        seed: Seed for initialisation, shuffling and negatives.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        threads: ``torch.set_num_threads`` (``None``: leave as is).
        eval_batch_size: Queries per evaluation pass.
    """

    loss: str = "1-n"
    epochs: int = 100
    batch_size: int = 500
    lr: float = 0.1
    optimizer: str = "adagrad"
    regularizer: str = "n3"
    reg_weight: float = 1e-2
    label_smoothing: float = 0.0
    num_negatives: int = 256
    adversarial_temperature: float = 1.0
    lr_schedule: str = "none"
    lr_decay: float = 0.99
    eval_every: int = 5
    patience: int = 5
    valid_max_triples: int | None = None
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        choices = {
            "loss": ("1-n", "negative"),
            "optimizer": ("adagrad", "adam"),
            "regularizer": ("n3", "l2", "none"),
            "lr_schedule": ("none", "plateau", "cosine", "exponential"),
            "device": ("auto", "cpu", "cuda"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigurationError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_every", "num_negatives", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigurationError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        for name in ("lr", "reg_weight", "label_smoothing", "adversarial_temperature", "patience"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigurationError(f"TrainConfig.{name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise ConfigurationError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigurationError(f"TrainConfig.lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigurationError(f"TrainConfig.max_minutes must be > 0, got {self.max_minutes!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigurationError(f"TrainConfig.threads must be >= 1, got {self.threads!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(slots=True)
class TrainResult:
    """Outcome of ``train``: the best validation metrics and the history."""

    best_valid: RankingMetrics | None
    best_epoch: int
    epochs_run: int
    seconds: float
    stopped: str
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


def _queries(train: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every triple as a tail query and a head query: (anchor, rel, answer, is_head)."""
    h, r, t = train[:, 0], train[:, 1], train[:, 2]
    anchor = torch.cat([h, t])
    rel = torch.cat([r, r])
    answer = torch.cat([t, h])
    is_head = torch.cat([torch.zeros_like(r, dtype=torch.bool), torch.ones_like(r, dtype=torch.bool)])
    return anchor, rel, answer, is_head


def _reg(factors: list[Tensor], kind: str, weight: float) -> Tensor:
    if kind == "none" or weight == 0:
        return torch.zeros(())
    p = 3 if kind == "n3" else 2
    b = factors[0].shape[0]
    return weight * torch.stack([f.abs().pow(p).sum() for f in factors]).sum() / b


def _step_loss(
    model: KGEModel,
    cfg: TrainConfig,
    ents: Tensor,
    anchor: Tensor,
    rel: Tensor,
    answer: Tensor,
    direction: str,
    gen: torch.Generator,
) -> Tensor:
    q = model.query(ents, anchor, rel, direction)  # type: ignore[arg-type]
    if cfg.loss == "1-n":
        scores = model.match_all(q, ents)
        loss = F.cross_entropy(scores, answer, label_smoothing=cfg.label_smoothing)
    else:
        neg = torch.randint(0, model.num_entities, (len(anchor), cfg.num_negatives), generator=gen).to(anchor.device)
        scores = model.match(q, ents[torch.cat([answer.unsqueeze(1), neg], 1)])
        pos, negs = scores[:, 0], scores[:, 1:]
        if cfg.adversarial_temperature > 0:
            w = torch.softmax(negs * cfg.adversarial_temperature, dim=1).detach()
        else:
            w = torch.full_like(negs, 1.0 / negs.shape[1])
        loss = -(F.logsigmoid(pos).mean() + (w * F.logsigmoid(-negs)).sum(1).mean()) / 2
    reg = _reg(model.factors(ents, anchor, rel, answer, direction), cfg.regularizer, cfg.reg_weight)  # type: ignore[arg-type]
    return loss * len(anchor) + reg.to(loss.device) * len(anchor)


def _save(path: Path, obj: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(
    model: KGEModel,
    data: KGData,
    cfg: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train`` with early stopping on validation MRR.

    On return the model holds the weights of the best validation epoch (the last
    weights when there is no validation split).

    Args:
        model: The model (built with the data's entity/relation counts).
        data: Encoded triples; ``valid`` drives early stopping, filtered against train+valid+test.
        cfg: Hyper-parameters.
        checkpoint_dir: Write ``last.pt`` (every validation) and ``best.pt`` there.
        resume: Continue from ``checkpoint_dir/last.pt`` when it exists.
        progress: Show a tqdm progress bar with loss and validation MRR.
        log: Called with one line per validation (e.g. ``print``).

    Returns:
        Best validation metrics, best epoch, history and why training stopped.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adagrad":
        opt: torch.optim.Optimizer = torch.optim.Adagrad(params, lr=cfg.lr)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr)
    sched: Any = None
    if cfg.lr_schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1)
    elif cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    elif cfg.lr_schedule == "exponential":
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)

    filt = FilterIndex(data.all_triples()) if len(data.valid) else None
    anchor_all, rel_all, answer_all, head_all = (x.to(device) for x in _queries(data.train))
    n_q = len(anchor_all)
    start_epoch, best_mrr, best_epoch, bad, history = 1, -1.0, 0, 0, []
    best_valid: RankingMetrics | None = None
    best_state = copy.deepcopy(model.state_dict())
    last_path = checkpoint_dir / "last.pt" if checkpoint_dir else None
    if resume and last_path is not None and last_path.exists():
        ck = load_tensors(last_path, map_location=device)  # tensors and plain data only
        if ck.get("kind") != model.kind or ck.get("model_args", {}).get("dim") != model.dim:
            raise ConfigurationError(f"checkpoint {last_path} is for {ck.get('kind')!r}, not this {model.kind!r} model")
        model.load_state_dict(ck["state"])
        opt.load_state_dict(ck["optim"])
        if sched is not None and ck.get("sched"):
            sched.load_state_dict(ck["sched"])
        start_epoch, best_mrr, best_epoch = ck["epoch"] + 1, ck["best_mrr"], ck["best_epoch"]
        bad, history = ck["bad"], ck["history"]
        best_valid = RankingMetrics(**ck["best_valid"]) if ck.get("best_valid") else None
        torch.set_rng_state(ck["rng"])
        best_path = checkpoint_dir / "best.pt"  # type: ignore[operator]
        best_state = load_tensors(best_path, map_location=device)["state"] if best_path.exists() else model.state_dict()
        if log:
            log(f"resumed from {last_path} at epoch {ck['epoch']} (best valid MRR {best_mrr:.4f})")

    t0 = time.perf_counter()
    deadline = t0 + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    stopped, epoch = "max_epochs", start_epoch - 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=start_epoch - 1, desc=f"{model.kind}", unit="ep", dynamic_ncols=True)
    model.train()
    for epoch in range(start_epoch, cfg.epochs + 1):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(n_q, generator=gen).to(device)
        total, seen = 0.0, 0
        for i in range(0, n_q, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            ents = model.encode()
            loss = torch.zeros((), device=device)
            for is_head, direction in ((False, "tail"), (True, "head")):
                sel = idx[head_all[idx] == is_head]
                if len(sel):
                    loss = loss + _step_loss(
                        model, cfg, ents, anchor_all[sel], rel_all[sel], answer_all[sel], direction, gen
                    )
            loss = loss / len(idx)
            if not torch.isfinite(loss):
                raise ConfigurationError(f"training diverged (loss {loss.item()}) at epoch {epoch}: lower lr")
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if time.perf_counter() > deadline:
                break
        ep_loss = total / max(seen, 1)
        out_of_time = time.perf_counter() > deadline
        row: dict[str, Any] = {"epoch": epoch, "loss": round(ep_loss, 6), "seconds": round(time.perf_counter() - t0, 1)}
        if filt is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs or out_of_time):
            m = evaluate(model, data.valid, filt, batch_size=cfg.eval_batch_size, max_triples=cfg.valid_max_triples)
            row["valid_mrr"] = round(m.mrr, 5)
            if m.mrr > best_mrr + 1e-4:
                best_mrr, best_epoch, bad, best_valid = m.mrr, epoch, 0, m
                best_state = copy.deepcopy(model.state_dict())
                if checkpoint_dir is not None:
                    _save(checkpoint_dir / "best.pt", {"state": best_state, "epoch": epoch})
            else:
                bad += 1
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(m.mrr)
            if log:
                log(
                    f"epoch {epoch}: loss {ep_loss:.4f} valid MRR {m.mrr:.4f} H@10 {m.hits10:.4f} "
                    f"(best {best_mrr:.4f} @ {best_epoch}) {row['seconds']:.0f}s"
                )
            if last_path is not None:
                _save(
                    last_path,
                    {
                        "kind": model.kind,
                        "model_args": model.constructor_args(),
                        "state": model.state_dict(),
                        "optim": opt.state_dict(),
                        "sched": sched.state_dict() if sched is not None else None,
                        "epoch": epoch,
                        "best_mrr": best_mrr,
                        "best_epoch": best_epoch,
                        "bad": bad,
                        "history": [*history, row],
                        "rng": torch.get_rng_state(),
                        "config": cfg.as_dict(),
                        "best_valid": best_valid.as_dict() if best_valid else None,
                    },
                )
        if sched is not None and not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step()
        history.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{ep_loss:.4f}", mrr=f"{row.get('valid_mrr', float('nan')):.4f}", best=f"{max(best_mrr, 0):.4f}"
            )
        if out_of_time:
            stopped = "time"
            break
        if filt is not None and cfg.patience and bad >= cfg.patience:
            stopped = "patience"
            break
    if bar is not None:
        bar.close()
    if filt is None:
        best_epoch = epoch
    else:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_valid, best_epoch, epoch, time.perf_counter() - t0, stopped, history)

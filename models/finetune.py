"""Fine-tuning: one ``RunConfig`` → one run directory.

A compact training loop on ``accelerate.Accelerator`` so the same entry point runs on one
CPU, one GPU (mixed precision), or under ``accelerate launch``/``torchrun`` (DDP, FSDP).

Run directory::

    config.yaml          the validated config (+ resolved_model)
    labels.json          classify only: label order
    metrics.json         best validation + test metrics, timings, parameter counts
    epochs.jsonl         one line per evaluation
    checkpoints/step-N/  accelerate state + trainer.json (atomic; resume picks the latest)
    tensorboard/         SummaryWriter logs (when the tensorboard package is installed)
    model/ | adapter/    full weights, or the peft adapter (+ tokenizer)
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgnlp.errors import ConfigurationError
from kgnlp.files import atomic_dir, atomic_write_json, atomic_write_text
from models.config import RunConfig
from models.data import read_texts, run_splits

__all__ = ["FGM", "finetune"]


@dataclass
class _State:
    """What a checkpoint records besides the accelerate state."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float | None = None
    bad_evals: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str | None = None  # of the config and data the checkpoint was trained on


# how long, where and on how many threads a run goes: a resume may change these (e.g. more epochs)
_RUN_ONLY = (
    "output_dir", "install_adapter", "train.epochs", "train.max_steps", "train.max_minutes", "train.num_threads"
)  # fmt: skip


def run_fingerprint(cfg: RunConfig) -> str:
    """A hash of the config (less ``_RUN_ONLY``) and the bytes of its data files: a checkpoint
    is resumed only by a run with the same fingerprint."""
    import hashlib

    dumped = json.loads(cfg.model_dump_json())
    for key in _RUN_ONLY:
        *parents, leaf = key.split(".")
        node = dumped
        for name in parents:
            node = node[name]
        node.pop(leaf, None)
    h = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode())
    extra = cfg.pretrain.texts if cfg.pretrain is not None else None
    for path in (cfg.data.train, cfg.data.validation, cfg.data.test, extra):
        if path is not None and Path(path).is_file():
            with Path(path).open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


class FGM:
    """Fast Gradient Method: an adversarial step on the word-embedding matrix.

    After the clean backward pass, ``attack()`` adds ``epsilon * g / ||g||`` to the
    embedding weights, the caller runs a second forward/backward, then ``restore()``.
    """

    def __init__(self, embeddings: Any, epsilon: float) -> None:
        self.weight = embeddings.weight
        self.epsilon = epsilon
        self._backup: Any = None

    def attack(self) -> bool:
        import torch

        grad = self.weight.grad
        if grad is None:
            return False
        norm = torch.linalg.vector_norm(grad)
        if not torch.isfinite(norm) or norm == 0:
            return False
        self._backup = self.weight.data.clone()
        self.weight.data.add_(self.epsilon * grad / norm)
        return True

    def restore(self) -> None:
        if self._backup is not None:
            self.weight.data = self._backup
            self._backup = None


def _seed_all(seed: int) -> None:
    from accelerate.utils import set_seed

    random.seed(seed)
    set_seed(seed)


def _fix_mmap_threshold(size: int = 1 << 20) -> None:
    """Make glibc hand big freed blocks back to the system.

    glibc raises its mmap threshold each time a large block is freed; from then on the
    variable-shape tensors of CPU training come from the heap and fragment it: a 75-step LoRA
    SFT run here grew to 24 GB and was killed at step 47, and stays at 3-9 GB with a fixed
    threshold (the same as ``MALLOC_MMAP_THRESHOLD_=1048576``, which wins when set).
    """
    import contextlib
    import ctypes
    import sys

    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").mallopt(-3, size)  # -3: M_MMAP_THRESHOLD


def masked_lm_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Causal-LM loss (mean over labelled tokens, as ``model(**batch).loss``) computing the
    vocabulary-wide output layer only at labelled positions.

    SFT labels only the answer, about a third of each sequence; the full logits tensor
    (batch × length × 49k for SmolLM2) dominated training memory and a fifth of its compute.
    Falls back to the base model's own loss for models without ``get_decoder`` or with logit softcapping.
    """
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings()
    if decoder is None or head is None or getattr(base.config, "final_logit_softcapping", None):
        return base(**batch).loss  # the base: a peft wrapper's own additions (AdaLoRA's regulariser) are the caller's
    target = batch["labels"][:, 1:]
    keep = target != -100
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), target[keep])


def _prepare_data(cfg: RunConfig) -> None:
    import importlib

    module, _, func = (cfg.data.prepare or "").partition(":")
    try:
        hook = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise ConfigurationError(f"data.prepare: cannot import {cfg.data.prepare!r}: {e}") from e
    hook(cfg)
    if not Path(cfg.data.train).exists():
        raise ConfigurationError(f"data.prepare: {cfg.data.prepare} did not write data.train ({cfg.data.train})")


def _domain_pretrain(
    cfg: RunConfig, model_path: Path, train: Any, fingerprint: str, log: Callable[[str], None]
) -> None:
    """Self-supervised pre-training on the training split's texts (+ ``pretrain.texts``) into
    ``RUN_DIR/pretrained``; kept (and reused by a resume) while the run's fingerprint matches."""
    from transformers import AutoTokenizer

    from models.pretrain import continue_pretraining

    p = cfg.pretrain
    assert p is not None
    if p.texts is not None and not Path(p.texts).is_file():
        raise ConfigurationError(f"pretrain.texts: no such file: {p.texts}")
    run_dir = Path(cfg.output_dir)
    record = run_dir / "pretrain.json"
    done = (run_dir / "pretrained" / "config.json").is_file() and record.is_file()
    if done and json.loads(record.read_text()).get("fingerprint") == fingerprint:
        log("pretrain: reusing RUN_DIR/pretrained")
        return
    if cfg.task == "classify":
        texts = list(train.texts)
    else:  # chat examples: every message's text
        texts = [m["content"] for conversation in train for m in conversation if m.get("content")]
    if p.texts is not None:
        texts += read_texts(p.texts, p.text_field)
    objective = p.objective
    if objective == "auto":
        objective = "mlm" if AutoTokenizer.from_pretrained(str(model_path)).mask_token_id is not None else "clm"
    log(f"pretrain: {objective} on {len(texts)} unlabelled texts")
    started = time.monotonic()
    stats = continue_pretraining(
        model_path, texts, run_dir / "pretrained", objective, p.epochs, p.lr, p.batch_size, p.max_len,
        max_steps=p.max_steps, seed=cfg.train.seed, head_warmup_steps=p.head_warmup_steps, log=log,
    )  # fmt: skip
    summary = {**stats, "objective": objective, "texts": len(texts), "seconds": round(time.monotonic() - started, 1)}
    atomic_write_json(record, {**summary, "fingerprint": fingerprint})
    log(f"pretrain: {json.dumps(summary)}")


def _optimizer(model: Any, cfg: RunConfig) -> Any:
    import torch

    decay, no_decay, head = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if cfg.train.head_lr and any(h in name for h in ("classifier", "score")):
            head.append(p)
        elif p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if head:
        groups.append({"params": head, "weight_decay": cfg.train.weight_decay, "lr": cfg.train.head_lr})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.train.lr)


def _mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _latest_checkpoint(ckpt_root: Path) -> Path | None:
    steps = [p for p in ckpt_root.glob("step-*") if p.is_dir() and (p / "trainer.json").is_file()]
    return max(steps, key=lambda p: int(p.name.split("-")[1])) if steps else None


def finetune(cfg: RunConfig, resume: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train as configured and write the run directory.

    Args:
        cfg: the validated run config.
        resume: continue from the latest checkpoint in ``output_dir`` when there is one.
        log: where progress lines go (main process only).

    Returns:
        The metrics written to ``metrics.json``.
    """
    import numpy as np
    import torch
    import yaml
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from models.methods import adalora_orth_reg, apply_method, count_parameters, qlora_load_kwargs

    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    if not torch.cuda.is_available():
        _fix_mmap_threshold()
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state and refuses an Accelerator whose mixed precision
    # differs from an earlier one's: each run is its own training, so start from a fresh state
    # (the distributed PartialState, the process group, is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # also what makes accelerate pick gloo DDP under torchrun on CPU
        mixed_precision=_mixed_precision(t.mixed_precision),
        gradient_accumulation_steps=t.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    main = accelerator.is_main_process
    _seed_all(t.seed)
    run_dir = Path(cfg.output_dir)
    model_path = cfg.model_path()
    ckpt_root = run_dir / "checkpoints"
    latest = _latest_checkpoint(ckpt_root) if resume else None
    if not resume and main and ckpt_root.exists():
        shutil.rmtree(ckpt_root)  # --fresh: a later resume must not find the old run's steps
    # derived data is rebuilt for every new run (its recipe may have changed); a resume keeps it
    if cfg.data.prepare and (latest is None or not Path(cfg.data.train).exists()):
        if main:
            log(f"data: building {cfg.data.train} with {cfg.data.prepare}")
            _prepare_data(cfg)
        accelerator.wait_for_everyone()
    fingerprint = run_fingerprint(cfg)
    saved = _State(**json.loads((latest / "trainer.json").read_text())) if latest is not None else None
    if saved is not None and saved.fingerprint not in (None, fingerprint):  # None: before fingerprints
        # checked before anything is written: the run directory keeps describing its checkpoints
        raise ConfigurationError(
            f"{run_dir} holds checkpoints of a run with another config or other data; "
            "run with --fresh to start over there, or set another output_dir"
        )
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dumped = json.loads(cfg.model_dump_json())
        # the backbone this run fine-tunes (its LoRA adapters apply to it): the domain-adapted one if any
        backbone = run_dir / "pretrained" if cfg.pretrain is not None else model_path
        dumped["resolved_model"] = str(backbone.resolve())
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(dumped, sort_keys=False))
    train, val, test = run_splits(cfg)
    if cfg.pretrain is not None:
        if main:
            _domain_pretrain(cfg, model_path, train, fingerprint, log)
        accelerator.wait_for_everyone()
        model_path = run_dir / "pretrained"
    load_kwargs = qlora_load_kwargs() if cfg.method.kind == "qlora" else {}
    rng = random.Random(t.seed)

    if cfg.task == "classify":
        from models.classify import build_sequence_classifier

        labels = cfg.labels or sorted(set(train.labels) | set(val.labels) | set(test.labels))
        unknown = (set(train.labels) | set(val.labels) | set(test.labels)) - set(labels)
        if unknown:
            raise ConfigurationError(f"labels: data has labels not in the configured list: {sorted(unknown)[:5]}")
        lab2id = {x: i for i, x in enumerate(labels)}
        model, tokenizer = build_sequence_classifier(model_path, labels, t.dropout, **load_kwargs)
        y_train = [lab2id[x] for x in train.labels]
        teacher = None
        if cfg.distill is not None:
            from models.distill import cached_teacher_logits

            teacher = torch.from_numpy(cached_teacher_logits(cfg.distill.teacher, train.texts, run_dir / "cache"))
        weight = None
        if t.class_weights == "balanced":
            counts = np.bincount(y_train, minlength=len(labels)).astype(np.float64)
            weight = torch.tensor(len(y_train) / (len(labels) * np.maximum(counts, 1)), dtype=torch.float32)
        if main:
            atomic_write_json(run_dir / "labels.json", labels)

        def collate(idx: list[Any]) -> dict[str, Any]:
            from models.data import augment_text

            texts = [train.texts[i] for i in idx]
            if t.augment != "none":
                texts = [augment_text(x, t.augment, t.augment_prob, rng) for x in texts]
            enc = tokenizer(texts, truncation=True, max_length=t.max_len, padding=True, return_tensors="pt")
            enc["labels"] = torch.tensor([y_train[i] for i in idx])
            enc["idx"] = torch.tensor(idx)
            return dict(enc)

        train_items: list[Any] = list(range(len(train)))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from models.data import tokenize_chat

        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(model_path), **load_kwargs)
        labels, weight, teacher = [], None, None
        train_items = [tokenize_chat(tokenizer, m, t.max_len) for m in train]
        val_items = [tokenize_chat(tokenizer, m, t.max_len) for m in val]

        def collate(items: list[Any]) -> dict[str, Any]:  # type: ignore[misc]
            n = max(len(ids) for ids, _ in items)
            pad = tokenizer.pad_token_id
            ids = torch.tensor([x + [pad] * (n - len(x)) for x, _ in items])
            lab = torch.tensor([y + [-100] * (n - len(y)) for _, y in items])
            att = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in items])
            return {"input_ids": ids, "attention_mask": att, "labels": lab}

    n_train = len(train_items)
    batch_size: int = t.batch_size
    train_collate: Callable[[list[Any]], dict[str, Any]] = collate
    if t.group_by_length:
        texts = train.texts if cfg.task == "classify" else None
        train_items, batch_size = _length_groups(train_items, t.batch_size, t.seed, texts), 1

        def grouped(groups: list[Any]) -> dict[str, Any]:
            return collate([x for g in groups for x in g])

        train_collate = grouped

    steps_per_epoch = math.ceil(len(train_items) / (batch_size * accelerator.num_processes * t.grad_accum))
    total_steps = t.max_steps or max(1, math.ceil(steps_per_epoch * t.epochs))
    model = apply_method(model, cfg.method, cfg.task, total_steps)
    trainable, total = count_parameters(model)
    embeddings = model.get_input_embeddings() if t.fgm_epsilon > 0 else None
    frozen_embeddings = embeddings is not None and not embeddings.weight.requires_grad  # e.g. under LoRA
    if embeddings is not None and frozen_embeddings:
        embeddings.weight.requires_grad_(True)  # FGM needs the gradient; the loop drops it before the step
    optimizer = _optimizer(model, cfg)
    scheduler = get_scheduler(t.scheduler, optimizer, round(t.warmup_ratio * total_steps), total_steps)
    loader: Any = DataLoader(
        train_items,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=True,
        collate_fn=train_collate,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    fgm = FGM(accelerator.unwrap_model(model).get_input_embeddings(), t.fgm_epsilon) if embeddings is not None else None

    def task_loss(batch: dict[str, Any]) -> tuple[Any, bool]:
        """The task's loss and whether the model computed it itself (peft's AdaLoRA then added its regulariser)."""
        import torch.nn.functional as F

        batch = dict(batch)  # FGM runs a second pass on the same batch
        idx = batch.pop("idx", None)
        if cfg.task == "sft":
            if accelerator.num_processes == 1:  # DDP needs its wrapper's forward for gradient sync
                with accelerator.autocast():
                    return masked_lm_loss(accelerator.unwrap_model(model), batch), False
            return model(**batch).loss, True
        y = batch.pop("labels")
        logits = model(**batch).logits.float()

        def ce(z: Any, target: Any) -> Any:
            return F.cross_entropy(z.float(), target, weight=weight.to(z.device) if weight is not None else None)

        if teacher is not None and cfg.distill is not None:
            from models.distill import distillation_loss

            tl = teacher[idx.cpu()].to(logits.device)
            return distillation_loss(logits, tl, y, cfg.distill.temperature, cfg.distill.alpha, ce), False
        return ce(logits, y), False

    def loss_of(batch: dict[str, Any]) -> Any:
        loss, from_model = task_loss(batch)
        if cfg.method.kind == "adalora" and not from_model:
            loss = loss + adalora_orth_reg(accelerator.unwrap_model(model))
        return loss

    def evaluate() -> dict[str, float]:
        model.eval()
        out: dict[str, float] = {}
        if cfg.task == "classify":
            from models.classify import HFClassifier, classification_metrics

            clf = HFClassifier(accelerator.unwrap_model(model), tokenizer, labels, t.max_len, t.eval_batch_size)
            out = classification_metrics([lab2id[x] for x in val.labels], clf.predict_proba(val.texts))
        elif val_items:
            # causal-LM logits are [batch, length, vocab] (SmolLM2: 49k): a classifier's eval batch
            # size would need tens of GB, so validation uses the training batch size
            total, tokens = 0.0, 0
            with torch.inference_mode():
                for s in range(0, len(val_items), t.batch_size):
                    b = {k: v.to(accelerator.device) for k, v in collate(val_items[s : s + t.batch_size]).items()}
                    n = int((b["labels"][:, 1:] != -100).sum())
                    total, tokens = total + float(model(**b).loss) * n, tokens + n
            loss = total / max(tokens, 1)
            out = {"loss": loss, "perplexity": float(np.exp(loss))}
        model.train()
        return out

    state = _State(fingerprint=fingerprint)
    if latest is not None and saved is not None:
        accelerator.load_state(str(latest))
        state = saved
        state.fingerprint = fingerprint
        if main:
            log(f"resumed from {latest} (epoch {state.epoch}, step {state.global_step})")

    def save_checkpoint() -> None:
        tmp = ckpt_root / f".step-{state.global_step}.tmp"
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            atomic_write_json(tmp / "trainer.json", state.__dict__)
            final = ckpt_root / f"step-{state.global_step}"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            olds = sorted((p for p in ckpt_root.glob("step-*") if p != final), key=lambda p: int(p.name.split("-")[1]))
            for p in olds[: max(0, len(olds) - t.keep_checkpoints + 1)]:
                shutil.rmtree(p, ignore_errors=True)
        accelerator.wait_for_everyone()

    writer = None
    if main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            log("tensorboard is not installed: logging to epochs.jsonl only")
    better = (lambda a, b: a < b) if t.metric == "loss" else (lambda a, b: a > b)
    best_state: dict[str, Any] | None = None
    started = time.monotonic()
    stop = False
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    bar = tqdm(total=total_steps, initial=state.global_step, disable=not main, desc="train", dynamic_ncols=True)
    model.train()

    def after_eval() -> None:
        nonlocal best_state, stop
        metrics = evaluate()
        elapsed = time.monotonic() - started
        record = {"epoch": state.epoch, "step": state.global_step, "seconds": round(elapsed, 1), **metrics}
        state.history.append(record)
        if main:
            with open(run_dir / "epochs.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(f"val/{k}", v, state.global_step)
            log(f"eval step {state.global_step}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        value = metrics.get(t.metric, metrics.get("loss"))
        if value is not None and (state.best is None or better(value, state.best)):
            state.best, state.bad_evals = value, 0
            best_state = {k: v.detach().cpu().clone() for k, v in _trainable_state(accelerator.unwrap_model(model))}
        else:
            state.bad_evals += 1
            if t.early_stopping_patience and state.bad_evals >= t.early_stopping_patience:
                stop = True
                if main:
                    log(f"early stop: no {t.metric} improvement in {state.bad_evals} evaluations")
        save_checkpoint()

    for epoch in range(state.epoch, n_epochs):
        state.epoch = epoch
        loader.set_epoch(epoch)
        batches = (
            accelerator.skip_first_batches(loader, state.step_in_epoch * t.grad_accum)
            if state.step_in_epoch
            else loader
        )
        for batch in batches:
            with accelerator.accumulate(model):
                loss = loss_of(batch)
                accelerator.backward(loss)
                if fgm is not None and fgm.attack():
                    accelerator.backward(loss_of(batch))
                    fgm.restore()
                if fgm is not None and frozen_embeddings:
                    fgm.weight.grad = None  # it only aimed the attack: neither clipped nor stepped (AdamW skips it)
                if accelerator.sync_gradients and t.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                if cfg.method.kind == "adalora" and accelerator.sync_gradients:
                    accelerator.unwrap_model(model).base_model.update_and_allocate(state.global_step)
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            state.step_in_epoch += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", epoch=epoch)
            if writer is not None and state.global_step % 10 == 0:
                writer.add_scalar("train/loss", float(loss.detach()), state.global_step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], state.global_step)
            over_time = t.max_minutes is not None and time.monotonic() - started > t.max_minutes * 60
            if isinstance(t.eval_every, int) and state.global_step % t.eval_every == 0:
                after_eval()
            if state.global_step >= total_steps or over_time or stop:
                stop = True
                break
        if t.eval_every == "epoch" or (stop and state.global_step % int(t.eval_every) != 0):
            state.epoch, state.step_in_epoch = epoch + 1, 0  # what a resume continues with
            after_eval()
        state.step_in_epoch = 0
        if stop:
            break
    bar.close()
    train_seconds = time.monotonic() - started
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state, strict=False)
    result: dict[str, Any] = {
        "task": cfg.task,
        "method": cfg.method.kind,
        "model": str(model_path),
        "train_examples": n_train,
        "steps": state.global_step,
        "train_seconds": round(train_seconds, 1),
        "trainable_params": trainable,
        "total_params": total,
        f"best_val_{t.metric}": state.best,
        "val": state.history[-1] if state.history else {},
        "distributed": {"processes": accelerator.num_processes, "type": str(accelerator.distributed_type)},
    }
    if cfg.task == "classify":
        best = [h for h in state.history if h.get(t.metric) == state.best]
        result["val"] = best[-1] if best else evaluate()
        if test is not None and len(test):
            from models.classify import HFClassifier, classification_metrics

            clf = HFClassifier(unwrapped, tokenizer, labels, t.max_len, t.eval_batch_size)
            result["test"] = classification_metrics([lab2id[x] for x in test.labels], clf.predict_proba(test.texts))
            result["test_examples"] = len(test)
    if main:
        _save_artifact(unwrapped, tokenizer, run_dir, cfg.method.kind)
        atomic_write_json(run_dir / "metrics.json", result)
        if writer is not None:
            writer.close()
        log(f"run written to {run_dir}")
        if cfg.install_adapter:
            installed = _install_adapter(run_dir / "adapter", cfg.install_adapter)
            log(f"adapter {cfg.install_adapter!r} installed at {installed} (running services: POST /admin/adapters)")
    accelerator.wait_for_everyone()
    return result


def _length_groups(items: list[Any], batch_size: int, seed: int, texts: list[str] | None) -> list[list[Any]]:
    """Pre-formed batches of similar length: shuffle, cut into 50-batch pools, sort each pool by length."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)

    def length(i: int) -> int:
        return len(texts[items[i]]) if texts is not None else len(items[i][0])

    groups = []
    pool = 50 * batch_size
    for s in range(0, len(order), pool):
        chunk = sorted(order[s : s + pool], key=length)
        groups += [[items[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    return groups


def _trainable_state(model: Any) -> list[tuple[str, Any]]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return [(k, v) for k, v in model.state_dict().items() if k in names]


def _install_adapter(adapter: Path, name: str) -> Path:
    from kgnlp.files import default_home

    target = default_home() / "adapters" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target) as tmp:
        shutil.copytree(adapter, tmp, dirs_exist_ok=True)
    return target


def _save_artifact(model: Any, tokenizer: Any, run_dir: Path, kind: str) -> None:
    """Write ``adapter/`` (peft) or ``model/`` (full weights), with the tokenizer, atomically."""
    target = run_dir / ("model" if kind == "full" else "adapter")
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))

"""Distributed training helpers: launch commands and model-parallel loading.

``models.finetune.finetune`` is written against ``accelerate.Accelerator``; the same config
runs unchanged under a launcher:

- one machine, N GPUs (DDP): ``accelerate launch --multi_gpu --num_processes N -m models.finetune_main CONFIG``
  or ``torchrun --nproc_per_node N -m models.finetune_main CONFIG``
- FSDP: ``accelerate launch --use_fsdp --fsdp_sharding_strategy FULL_SHARD --num_processes N
  -m models.finetune_main CONFIG`` is accelerate's own path and is not tested here: its FSDP
  plugin needs a GPU/XPU (on CPU it stops with "no available devices"), and CI has no GPU.
- several machines: add ``--num_machines M --machine_rank R --main_process_ip HOST --main_process_port 29500``
  (or ``torchrun --nnodes M --node_rank R --rdzv_endpoint HOST:29500``).
- CPU only (CI runs it): ``torchrun --nproc_per_node 2`` uses the gloo backend.

``batch_size`` is per process: the global batch is ``batch_size × processes × grad_accum``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_model_parallel"]


def load_model_parallel(path: Path, kind: str = "causal", max_memory: dict[Any, str] | None = None) -> Any:
    """Load a model too large for one device, split layer-wise over the GPUs (and CPU) by ``device_map``.

    Args:
        path: model folder.
        kind: ``"causal"`` or ``"classify"``.
        max_memory: per-device caps, e.g. ``{0: "20GiB", 1: "20GiB", "cpu": "64GiB"}``.

    Returns:
        The model; ``model.hf_device_map`` shows the placement.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    return cls.from_pretrained(str(path), device_map="auto", max_memory=max_memory)

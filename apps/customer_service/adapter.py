"""The ``customer_service`` LoRA adapter the repository ships, and its installation at set-up.

``kgnlp models finetune data/retail/cs_sft.yaml`` trains it (see that file); ``ship`` then writes
the bf16 copy under ``data/retail/adapters/customer_service`` with what reproduces and judges it
(``TRAINING.json``: the run config, sha256 of the training data and of the Bitext source, the
run's metrics, the commands). ``install`` (run by ``kgnlp cs setup``, part of ``make serve``)
copies it to ``KGNLP_HOME/adapters`` unless an adapter of that name is already there that did not
come from an older shipped copy: an adapter the user trained stays.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kgnlp.errors import NotFoundError
from kgnlp.files import atomic_dir, sha256_file
from models.gguf_merge import adapter_fingerprint

__all__ = ["SHIPPED", "install", "ship"]

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "retail" / "adapters" / "customer_service"
_ORIGIN = ".shipped-sha256"  # marks an installed copy of the shipped adapter (its digest)
_FILES = ("adapter_config.json", "adapter_model.safetensors")


def ship(run_dir: Path, out: Path = SHIPPED) -> dict[str, Any]:
    """Write the bf16 copy of ``run_dir/adapter`` to ``out`` with ``TRAINING.json``.

    Returns:
        the ``TRAINING.json`` record.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from apps.customer_service.sft_data import SOURCE

    adapter = Path(run_dir) / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        raise NotFoundError(f"no trained adapter at {adapter} (run `kgnlp models finetune data/retail/cs_sft.yaml`)")
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    import yaml

    run_config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    data = {
        k: sha256_file(Path(v)) for k, v in run_config.get("data", {}).items() if k in ("train", "validation") and v
    }
    with atomic_dir(Path(out)) as tmp:
        weights = {
            k: v.to(torch.bfloat16).contiguous()
            for k, v in load_file(str(adapter / "adapter_model.safetensors")).items()
        }
        save_file(weights, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        adapter_config = json.loads((adapter / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = run_config.get("model")  # a catalog name, not this machine's path
        (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        record = {
            "base_model": run_config.get("model"),
            "run_config": run_config,
            "data_sha256": {**data, "bitext_source": sha256_file(SOURCE)},
            "metrics": metrics,
            "weights_dtype": "bfloat16",
            "commands": ["kgnlp models finetune data/retail/cs_sft.yaml", f"kgnlp cs ship-adapter {run_dir}"],
        }
        (tmp / "TRAINING.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


def install(home: Path, source: Path = SHIPPED) -> dict[str, Any]:
    """Install the shipped adapter in ``home/adapters/customer_service`` (idempotent).

    Returns:
        ``{"status": "installed"|"unchanged"|"kept"|"not_shipped", "path"}``; ``kept``: an adapter of
        that name that the user trained is there and stays.
    """
    target = Path(home) / "adapters" / source.name
    if not (source / "adapter_model.safetensors").is_file():
        return {"status": "not_shipped", "path": str(target)}
    digest = adapter_fingerprint(source)  # config and weights
    origin = target / _ORIGIN
    if (target / "adapter_config.json").is_file():
        if not origin.is_file():
            return {"status": "kept", "path": str(target)}
        if origin.read_text().strip() == digest:
            return {"status": "unchanged", "path": str(target)}
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target) as tmp:
        for name in (*_FILES, "TRAINING.json"):
            if (source / name).is_file():
                shutil.copy(source / name, tmp / name)
        (tmp / _ORIGIN).write_text(digest)
    return {"status": "installed", "path": str(target)}

"""Quantization for export: int8 dynamic (per-channel weights, dynamic activations) for CPU serving.

The int8 state dict is saved with the float config, so the on-disk size is the real int8
size; loading rebuilds the float skeleton, quantizes it the same way and loads the weights.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from kgnlp.errors import NotFoundError
from kgnlp.files import atomic_dir, atomic_write_json
from models.classify import load_int8_classifier, quantize_classifier

__all__ = ["load_int8_classifier", "quantize_run", "serialized_bytes"]


def serialized_bytes(model: Any) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (what the weights take on disk)."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def quantize_run(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Quantize a full-FT classifier run to int8 and report size and accuracy delta on its test split.

    Args:
        run_dir: a classifier run with ``model/``.
        out_dir: new run directory (``model_int8/``, ``labels.json``, ``config.yaml``, ``metrics.json``).

    Returns:
        The metrics written (``test``, ``test_fp32``, ``accuracy_delta``, byte sizes).
    """
    import shutil

    import torch

    from models.classify import HFClassifier, classification_metrics, load_classifier
    from models.config import load_config
    from models.data import run_splits

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "model").is_dir():
        raise NotFoundError(f"{run_dir} has no model/ (quantize a full fine-tuning or pruned run)")
    fp32 = load_classifier(run_dir)
    fp32_bytes = serialized_bytes(fp32.model)
    q = quantize_classifier(load_classifier(run_dir).model)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir / "model_int8") as tmp:
        fp32.model.config.save_pretrained(str(tmp))
        fp32.tokenizer.save_pretrained(str(tmp))
        torch.save(q.state_dict(), tmp / "int8_state.pt")
    shutil.copy(run_dir / "labels.json", out_dir / "labels.json")
    shutil.copy(run_dir / "config.yaml", out_dir / "config.yaml")
    _, _, test = run_splits(load_config(run_dir / "config.yaml"))
    lab = {x: i for i, x in enumerate(fp32.labels)}
    y = [lab[x] for x in test.labels]
    m32 = classification_metrics(y, fp32.predict_proba(test.texts))
    m8 = classification_metrics(y, HFClassifier(q, fp32.tokenizer, fp32.labels, fp32.max_len).predict_proba(test.texts))
    metrics = {
        "method": "int8-dynamic",
        "quantized_from": str(run_dir),
        "test": m8,
        "test_fp32": m32,
        "accuracy_delta": m8["accuracy"] - m32["accuracy"],
        "fp32_state_bytes": fp32_bytes,
        "int8_state_bytes": (out_dir / "model_int8" / "int8_state.pt").stat().st_size,
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "test_fp32"}, default=str))
    return metrics

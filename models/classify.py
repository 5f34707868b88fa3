"""Text classifiers: the ``Classifier`` protocol, a transformers-backed implementation, batch prediction.

A classifier run directory (written by ``models.finetune``) holds ``labels.json`` and one of:
``model/`` (full weights + tokenizer), ``adapter/`` (peft adapter + tokenizer, base named in
``config.yaml``) or ``model_int8/`` (int8 state dict + config, see ``models.quantize``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kgnlp.errors import ModelUnavailableError, NotFoundError, ValidationError
from kgnlp.files import load_tensors

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Classifier",
    "HFClassifier",
    "build_sequence_classifier",
    "classification_metrics",
    "load_classifier",
    "load_int8_classifier",
    "predict_file",
    "quantize_classifier",
]


@runtime_checkable
class Classifier(Protocol):
    """Anything that maps texts to a probability per label."""

    labels: list[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return an ``(n, len(labels))`` array of probabilities."""
        ...


def classification_metrics(y_true: Sequence[int], proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and mean log-loss of probabilities against integer labels."""
    import numpy as np
    from sklearn.metrics import f1_score

    y = np.asarray(y_true)
    pred = proba.argmax(1)
    nll = float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None)).mean())
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(proba.shape[1]), zero_division=0)),
        "loss": nll,
    }


def build_sequence_classifier(
    path: Path, labels: list[str], dropout: float | None = None, **load_kwargs: Any
) -> tuple[Any, Any]:
    """Load a backbone (encoder or decoder) with a fresh classification head.

    Args:
        path: model folder (a sentence-transformers folder works: its weights are the transformer).
        labels: label names, in output order.
        dropout: override hidden/attention dropout when the config has those fields.
        load_kwargs: extra ``from_pretrained`` arguments (e.g. a 4-bit quantization config).

    Returns:
        ``(model, tokenizer)``; decoders get a pad token (their EOS) so batches can be padded.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        config = AutoConfig.from_pretrained(
            str(path),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)},
        )
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load a classifier backbone from {path}: {e}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    if dropout is not None:
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout", "dropout"):
            if hasattr(config, field):
                setattr(config, field, dropout)
    model = _with_new_head(AutoModelForSequenceClassification, path, config, load_kwargs)
    return model, tokenizer


# the classification heads transformers adds to a backbone (DistilBERT's has a pre_classifier layer)
NEW_HEAD_PREFIXES = ("classifier.", "pre_classifier.", "score.")


def _with_new_head(auto_class: Any, path: Path, config: Any, load_kwargs: dict[str, Any]) -> Any:
    """``from_pretrained`` without transformers' load report when the only missing weights are the
    new head's (it reads "MISSING ... Consider training on your downstream task" to a user of
    ``make serve``, about a head that is trained or loaded right after); any other missing or
    mismatched weight is still reported, as a ``kgnlp.models`` warning."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = auto_class.from_pretrained(str(path), config=config, output_loading_info=True, **load_kwargs)
    finally:
        hf_logging.set_verbosity(level)
    missing = [k for k in info.get("missing_keys", ()) if not str(k).startswith(NEW_HEAD_PREFIXES)]
    if missing or info.get("mismatched_keys"):
        logging.getLogger("kgnlp.models").warning(
            "%s: weights missing from the checkpoint %s, of another shape %s",
            path, sorted(missing), info.get("mismatched_keys"),
        )  # fmt: skip
    return model


class HFClassifier:
    """A transformers sequence-classification model behind the ``Classifier`` protocol.

    Args:
        model: a model returning ``.logits``.
        tokenizer: its tokenizer.
        labels: label names in logit order.
        max_len: truncation length.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], max_len: int = 128, batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_len = max_len
        self.batch_size = batch_size

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, ``(n, len(labels))``; texts are length-sorted per call to cut padding."""
        import numpy as np
        import torch

        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        device = next(self.model.parameters()).device if any(True for _ in self.model.parameters()) else "cpu"
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx], truncation=True, max_length=self.max_len, padding=True, return_tensors="pt"
                ).to(device)
                out[idx] = self.model(**enc).logits.float().cpu().numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        z = self.logits(texts)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


def load_classifier(run_dir: Path, batch_size: int = 64) -> HFClassifier:
    """Load the classifier a fine-tuning run (or ``models.quantize``/``models.prune``) produced.

    Args:
        run_dir: the run directory.
        batch_size: texts per forward pass.

    Returns:
        An ``HFClassifier`` in eval mode on CPU.
    """
    import yaml
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = Path(run_dir)
    labels_file = run_dir / "labels.json"
    if not labels_file.is_file():
        raise NotFoundError(f"{run_dir} is not a classifier run (no labels.json)")
    labels = json.loads(labels_file.read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    max_len = int(cfg.get("train", {}).get("max_len", 128))
    if (run_dir / "model_int8").is_dir():
        model, tokenizer = load_int8_classifier(run_dir / "model_int8")
    elif (run_dir / "model").is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "model"))
        model = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "model"))
    elif (run_dir / "adapter").is_dir():
        from peft import PeftModel

        base_path = Path(cfg["resolved_model"])
        base, _ = build_sequence_classifier(base_path, labels)
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "adapter"))
        model = PeftModel.from_pretrained(base, str(run_dir / "adapter"))
        if not model.active_peft_config.is_prompt_learning:  # LoRA/AdaLoRA/IA3: fold into the weights,
            model = model.merge_and_unload()  # same outputs (tested), no adapter overhead per call
    else:
        raise NotFoundError(f"{run_dir} has no model/, adapter/ or model_int8/")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return HFClassifier(model, tokenizer, labels, max_len=max_len, batch_size=batch_size)


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_file(
    classifier: Classifier, input_path: Path, out_path: Path, text_field: str = "text", chunk_size: int = 512
) -> int:
    """Stream a CSV/JSONL file through a classifier into JSONL (``label``, ``probabilities``, ``id``).

    The output is written to a temporary sibling and renamed when complete.

    Args:
        classifier: any ``Classifier``.
        input_path: ``.csv`` or ``.jsonl`` with a ``text_field`` column.
        out_path: the JSONL to write.
        text_field: column/key holding the text.
        chunk_size: rows held in memory at once.

    Returns:
        The number of rows written.
    """
    from models.data import iter_records

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for chunk in _chunks(iter_records(input_path), chunk_size):
                for row in chunk:
                    if text_field not in row:
                        raise ValidationError(f"{input_path}: row {n + 1} has no {text_field!r} field")
                proba = classifier.predict_proba([str(r[text_field]) for r in chunk])
                for row, p in zip(chunk, proba, strict=True):
                    record = {
                        "id": row.get("id", n),
                        "label": classifier.labels[int(p.argmax())],
                        "probabilities": {lab: round(float(v), 6) for lab, v in zip(classifier.labels, p, strict=True)},
                    }
                    f.write(json.dumps(record) + "\n")
                    n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def quantize_classifier(model: Any) -> Any:
    """A sequence classifier with int8 dynamic Linear layers; its head stays float (``quantize_run``'s form)."""
    from models.loading import quantize_int8_dynamic

    keep = ("classifier", "score", "classifier.dense", "classifier.out_proj")
    return quantize_int8_dynamic(model.eval(), keep_float=keep)[0]


def load_int8_classifier(folder: Path) -> tuple[Any, Any]:
    """Load what ``quantize_run`` saved: ``(quantized model, tokenizer)``.

    Raises:
        StoreError: ``int8_state.pt`` holds more than tensors (a pickled callable is refused, not run).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    config = AutoConfig.from_pretrained(str(folder))
    model = quantize_classifier(AutoModelForSequenceClassification.from_config(config))
    model.load_state_dict(load_tensors(folder / "int8_state.pt"))  # a state dict: tensors only, no pickled code
    return model.eval(), AutoTokenizer.from_pretrained(str(folder))

"""The served financial-sentiment classifier: three labels with calibrated probabilities.

A registered model is a folder under ``KGNLP_HOME/sentiment/models/NAME/`` written atomically
(``kgnlp.files.atomic_dir``) by ``apps.sentiment.training.register_model``::

    manifest.json   kind, created, data, metrics, calibration {temperature, ece_before, ece_after},
                    members [{path, weight}], max_len, quantize, keep_float
    members/0/      a transformers sequence classifier (safetensors + tokenizer), one per member

No pickle: weights are safetensors, everything else JSON. Serving quantizes the members'
``nn.Linear`` layers to int8 (dynamic) at load time when the manifest says so (``keep_float``: the
layer-name suffixes left in float, chosen on validation at registration), sorts each call's
texts by length and pads per batch (dynamic padding). Probabilities are
``softmax(log p_mix / T)`` where ``p_mix`` is the (weighted) member mixture and ``T`` the
temperature fit on the validation split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kgnlp.errors import ModelUnavailableError, NotFoundError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "LABELS",
    "MANIFEST",
    "RegisteredClassifier",
    "SentimentClassifier",
    "SentimentPrediction",
    "load_latest",
    "load_registered",
    "models_dir",
    "registered_models",
]

LABELS = ("negative", "neutral", "positive")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SentimentPrediction:
    """One text's sentiment.

    Attributes:
        label: the most probable of ``LABELS``.
        probabilities: all three labels, calibrated, summing to 1.
    """

    label: str
    probabilities: dict[str, float]


@runtime_checkable
class SentimentClassifier(Protocol):
    """What the sentiment app serves."""

    name: str

    def predict(self, texts: Sequence[str]) -> list[SentimentPrediction]:
        """Predictions in input order (batched inside)."""
        ...

    def info(self) -> dict[str, Any]:
        """Kind, version, training data, metrics and size (for ``/health/ready``)."""
        ...


def models_dir(home: Path) -> Path:
    """Where registered sentiment models live: ``home/sentiment/models``."""
    return Path(home) / "sentiment" / "models"


def registered_models(home: Path) -> list[Path]:
    """Complete registered model folders, oldest first (by manifest ``created``, then name)."""
    root = models_dir(home)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.name.startswith(".") or not (p / MANIFEST).is_file():
            continue  # atomic_dir temporaries and half-written folders are skipped
        try:
            created = str(json.loads((p / MANIFEST).read_text()).get("created", ""))
        except (OSError, ValueError):
            continue
        found.append((created, p.name, p))
    return [p for _, _, p in sorted(found)]


# Padded tokens per forward pass: short texts go many at a time, long ones fewer. Measured on
# random requests of 64 shipped tweets (AMD EPYC, int8; texts/s at 1 / 2 threads): unbounded
# 146 / 243, 2048 -> 221 / 377, 1024 -> 258 / 459, 768 -> 278 / 463, 512 -> 305 / 376.
BATCH_TOKENS = 768


def token_batches(lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[list[int]]:
    """Split length-sorted texts into consecutive batches of at most ``max_texts`` whose padded size
    (texts x longest) stays within ``max_tokens`` (a single longer text still gets its own batch):
    one long text in a request no longer pads 63 short ones to its length."""
    batches: list[list[int]] = []
    current: list[int] = []
    for k, n in enumerate(lengths):
        if current and (len(current) >= max_texts or (len(current) + 1) * max(n, 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(k)
    if current:
        batches.append(current)
    return batches


HEAD_LAYERS = ("classifier", "classifier.dense", "classifier.out_proj", "score", "pooler.dense")
"""Layer-name suffixes of classification heads (BERT, MPNet/RoBERTa, decoder LMs): never int8."""


def ffn_output_layers(folder: Path) -> list[str]:
    """Names of a transformers encoder's feed-forward output projections (``layer.N.output.dense``,
    not the attention's ``attention.output.dense``), read from the safetensors index without loading
    weights. Their inputs carry the outlier activations that per-tensor int8 handles worst."""
    from safetensors import safe_open

    names = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            names += [k.removesuffix(".weight") for k in f.keys() if k.endswith("output.dense.weight")]  # noqa: SIM118
    layers = [n for n in names if not n.endswith("attention.output.dense")]
    return sorted(layers, key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")])


class _Member:
    """One transformers classifier: raw label probabilities in ``LABELS`` order.

    ``runtime``: ``onnx`` serves the exported graph with ONNX Runtime (``models.onnx_classifier``;
    int8 as the manifest says; 1.1-1.3x torch int8's speed on this machine), ``torch`` the transformers model.
    """

    def __init__(
        self,
        folder: Path,
        max_len: int,
        batch_size: int,
        quantize: bool,
        keep_float: Sequence[str] = HEAD_LAYERS,
        runtime: str = "torch",
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForSequenceClassification.from_pretrained(str(folder))
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(f"cannot load sentiment model member {folder}: {e}") from e
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        if sorted(id2label.values()) != sorted(LABELS):
            raise ModelUnavailableError(f"{folder}: labels {sorted(id2label.values())} are not {list(LABELS)}")
        # column j of the model's output is LABELS.index(id2label[j])
        self.order = [LABELS.index(id2label[j]) for j in range(len(LABELS))]
        model.eval()
        self.folder = Path(folder)
        self.config = model.config
        self.params = sum(p.numel() for p in model.parameters())  # before quantization packs the Linear weights
        self.float_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self._inputs = set(self.tokenizer.model_input_names)
        self.runtime = runtime
        self.model: Any = None
        self.graph: Any = None
        if runtime == "onnx":
            from models.onnx_classifier import OnnxClassifier

            self.graph = OnnxClassifier.build(
                model, folder, self.vector_layer, "token_type_ids" in self._inputs, quantize, tuple(keep_float)
            )
        elif runtime == "torch":
            if quantize:
                from models.loading import quantize_int8_dynamic

                model = quantize_int8_dynamic(model, keep_float=tuple(keep_float))[0]
            self.model = model
        else:
            raise ValueError(f"unknown runtime {runtime!r} (onnx or torch)")
        self.max_len = max_len
        self.batch_size = batch_size
        self.batch_tokens = BATCH_TOKENS
        self._torch = torch

    def log_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 3)`` log-probabilities; texts are length-sorted and padded per batch."""
        return self.run(texts, vectors=False)[0]

    @property
    def vector_layer(self) -> int:
        """The hidden layer whose token mean is the sentence vector: two thirds up the encoder.

        A classifier's last layer is tuned to sentiment and forgets what a text is about; on the
        labelled topic texts (5-fold CV on the 1,705 fit texts, MiniLM-L6, ``benchmarks/topics.py
        --ablate``) the topic head scores micro-F1 0.764 on the last layer, 0.768 / 0.774 / 0.774 on
        layers 3 / 4 / 5.
        """
        return round(self.config.num_hidden_layers * 2 / 3)

    def run(self, texts: Sequence[str], vectors: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Log-probabilities and, from the same forward pass, each text's sentence vector (the
        L2-normalised mean of :attr:`vector_layer` over its tokens; ``(n, hidden)``, or None)."""
        import numpy as np

        torch = self._torch
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        vecs = np.zeros((len(texts), self.config.hidden_size), dtype=np.float32) if vectors else None
        if not texts:
            return out, vecs
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_len)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for idx in token_batches([len(ids[i]) for i in order], self.batch_size, self.batch_tokens):
                rows = [order[k] for k in idx]
                if self.graph is not None:
                    enc = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="np")
                    lp, vec = self.graph.run(enc["input_ids"], enc["attention_mask"])
                    out[np.ix_(rows, self.order)] = lp
                    if vecs is not None:
                        vecs[rows] = vec
                    continue
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                if "token_type_ids" in self._inputs:
                    enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
                result = self.model(**enc, output_hidden_states=vectors)
                lp = torch.log_softmax(result.logits.float(), -1).double().numpy()
                out[np.ix_(rows, self.order)] = lp
                if vecs is not None:
                    mask = enc["attention_mask"].unsqueeze(-1).float()
                    mean = (result.hidden_states[self.vector_layer].float() * mask).sum(1) / mask.sum(1).clamp(min=1)
                    vecs[rows] = torch.nn.functional.normalize(mean, dim=-1).numpy()
        return out, vecs


class RegisteredClassifier:
    """A registered model folder behind the ``SentimentClassifier`` protocol.

    Args:
        folder: the registered model folder (with ``manifest.json``).
        batch_size: texts per forward pass.
        quantize: override the manifest's int8 choice (None: as registered).
        runtime: ``onnx`` (ONNX Runtime), ``torch``, or ``auto``: onnx where ONNX Runtime is installed.
    """

    def __init__(self, folder: Path, batch_size: int = 64, quantize: bool | None = None, runtime: str = "auto") -> None:
        self.folder = Path(folder)
        self.runtime = resolve_runtime(runtime)
        self._may_fall_back = runtime == "auto"  # to torch, when a model does not export
        self.batch_size = batch_size
        try:
            self.manifest: dict[str, Any] = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise NotFoundError(f"{self.folder} is not a registered sentiment model: {e}") from e
        self.name: str = self.manifest.get("name", self.folder.name)
        self.temperature = float(self.manifest.get("calibration", {}).get("temperature", 1.0))
        self.quantize = bool(self.manifest.get("quantize", False)) if quantize is None else quantize
        self.keep_float = tuple(self.manifest.get("keep_float", HEAD_LAYERS))
        self._members: list[_Member] | None = None
        self._weights = [float(m.get("weight", 1.0)) for m in self.manifest.get("members", [])]
        if not self._weights:
            raise NotFoundError(f"{self.folder}: manifest lists no members")

    def load(self) -> RegisteredClassifier:
        """Load the member weights now (otherwise on the first ``predict``)."""
        if self._members is None:
            max_len = int(self.manifest.get("max_len", 128))

            def members() -> list[_Member]:
                return [
                    _Member(
                        self.folder / m["path"], max_len, self.batch_size, self.quantize, self.keep_float, self.runtime
                    )
                    for m in self.manifest["members"]
                ]

            try:
                self._members = members()
            except ModelUnavailableError as e:
                if not (self._may_fall_back and self.runtime == "onnx"):
                    raise
                import logging

                logging.getLogger(__name__).warning("%s: serving with torch instead of ONNX Runtime: %s", self.name, e)
                self.runtime = "torch"
                self._members = members()
        return self

    def log_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Uncalibrated log-probabilities of the member mixture, ``(n, 3)`` in ``LABELS`` order."""
        import numpy as np

        members = self.load()._members
        assert members is not None
        if len(members) == 1:
            return members[0].log_proba(texts)
        w = np.asarray(self._weights) / sum(self._weights)
        mix = sum(wi * np.exp(m.log_proba(texts)) for wi, m in zip(w, members, strict=True))
        return np.log(np.clip(mix, 1e-12, None))

    def _calibrated(self, log_proba: np.ndarray) -> np.ndarray:
        import numpy as np

        z = log_proba / self.temperature
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities ``softmax(log p / T)``, ``(n, 3)`` in ``LABELS`` order."""
        import numpy as np

        if not texts:
            return np.zeros((0, len(LABELS)))
        return self._calibrated(self.log_proba(texts))

    def predict(self, texts: Sequence[str]) -> list[SentimentPrediction]:
        """Calibrated predictions in input order."""
        return _predictions(self.predict_proba(list(texts)))

    def predict_with_vectors(self, texts: Sequence[str]) -> tuple[list[SentimentPrediction], np.ndarray]:
        """Predictions and the first member's sentence vectors, from one forward pass per text (the
        topic head reads the vectors: a text's topics cost no second encoder)."""
        import numpy as np

        members = self.load()._members
        assert members is not None
        texts = list(texts)
        if not texts:
            return [], np.zeros((0, members[0].config.hidden_size), dtype=np.float32)
        if len(members) == 1:
            log_proba, vecs = members[0].run(texts)
        else:
            w = np.asarray(self._weights) / sum(self._weights)
            runs = [m.run(texts, vectors=i == 0) for i, m in enumerate(members)]
            mix = sum(wi * np.exp(lp) for wi, (lp, _) in zip(w, runs, strict=True))
            log_proba, vecs = np.log(np.clip(mix, 1e-12, None)), runs[0][1]
        assert vecs is not None
        return _predictions(self._calibrated(log_proba)), vecs

    def info(self) -> dict[str, Any]:
        """Kind, version (name), created, data, metrics, calibration and size."""
        m = self.manifest
        disk = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file() and ".onnx" not in p.parts)
        return {
            "kind": m.get("kind"),
            "version": self.name,
            "created": m.get("created"),
            "recipe": m.get("recipe") or m.get("extra", {}).get("recipe"),
            "trained_on": m.get("data"),
            "licence": m.get("licence"),
            "metrics": m.get("metrics", {}),
            "calibration": m.get("calibration", {}),
            "members": len(self._weights),
            "quantize": "int8-dynamic" if self.quantize else "none",
            "runtime": self.runtime,
            "float_layers": list(self.keep_float) if self.quantize else "all",
            "quantization": m.get("quantization", {}),
            "size": {"disk_bytes": disk, "params": m.get("params")},
        }


def _predictions(proba: np.ndarray) -> list[SentimentPrediction]:
    return [
        SentimentPrediction(LABELS[int(p.argmax())], {lab: float(v) for lab, v in zip(LABELS, p, strict=True)})
        for p in proba
    ]


def resolve_runtime(runtime: str) -> str:
    """``onnx`` or ``torch`` for a requested runtime (``auto``: onnx where ONNX Runtime imports)."""
    if runtime == "auto":
        from models.onnx_classifier import onnx_available

        return "onnx" if onnx_available() else "torch"
    if runtime not in ("onnx", "torch"):
        raise ValueError(f"unknown runtime {runtime!r} (auto, onnx or torch)")
    return runtime


def load_registered(folder: Path, batch_size: int = 64, runtime: str = "auto") -> RegisteredClassifier:
    """Load one registered model folder (weights loaded now)."""
    return RegisteredClassifier(folder, batch_size, runtime=runtime).load()


def load_latest(home: Path, batch_size: int = 64, runtime: str = "auto") -> SentimentClassifier:
    """The newest registered sentiment model, loaded.

    Args:
        home: ``KGNLP_HOME``.
        batch_size: texts per forward pass.
        runtime: ``auto``, ``onnx`` or ``torch`` (see :class:`RegisteredClassifier`).

    Raises:
        NotFoundError: when no model is registered.
    """
    found = registered_models(home)
    if not found:
        raise NotFoundError("no sentiment model registered; run `kgnlp sentiment setup`")
    return load_registered(found[-1], batch_size, runtime)

"""Training, calibration and registration of the sentiment classifier.

- ``candidate_config``: the fine-tuning recipes compared in ``benchmarks/sentiment.py`` (one
  ``models.config.RunConfig`` each, trained by ``models.finetune``).
- ``fit_temperature`` / ``expected_calibration_error``: temperature scaling on the validation split.
- ``register_model``: copies trained run(s) into ``KGNLP_HOME/sentiment/models/NAME`` atomically,
  chooses the served form on validation (int8, int8 with the feed-forward outputs in float, or fp32),
  fits the temperature on it, measures test metrics and writes the manifest.
- ``build_default_from_artefact`` (``kgnlp sentiment setup``): the shipped LoRA adapter + head
  (``data/finance/sentiment_model/``, trained on the shipped tweets) merged into MiniLM, seconds.
- ``train_default`` (``kgnlp sentiment setup --train``, or when the artefact is missing): MiniLM
  trained on the shipped twitter set, a few minutes.
- ``train_chosen`` (``kgnlp sentiment train``): the configuration chosen by the benchmark, on
  PhraseBank from ``../shared/data`` (or ``--data DIR``) + the shipped synthetic sentences.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.sentiment.classifier import LABELS, MANIFEST, RegisteredClassifier, models_dir, registered_models
from apps.sentiment.classifier_data import (
    REPO,
    SplitInfo,
    prepare_splits,
    prepare_twitter_splits,
    prepare_twitter_three_way_splits,
    shipped_twitter_csv,
)
from kgnlp.errors import ConfigurationError, ModelUnavailableError, NotFoundError
from kgnlp.files import atomic_dir, atomic_write_json

if TYPE_CHECKING:
    import numpy as np

    from models.config import RunConfig

__all__ = [
    "CANDIDATES",
    "CHOSEN",
    "DEFAULT_ARTEFACT",
    "build_default_from_artefact",
    "candidate_config",
    "dapt_texts",
    "ensure_default_model",
    "evaluate_proba",
    "expected_calibration_error",
    "file_sha256",
    "fit_temperature",
    "parse_recipe",
    "register_model",
    "train_chosen",
    "train_default",
]

Log = Callable[[str], None]

# Fine-tuning recipes (RunConfig overrides). "splits": which data the run trains on.
_BASE_TRAIN: dict[str, Any] = {
    "batch_size": 32,
    "max_len": 64,
    "lr": 1e-4,
    "head_lr": 1e-3,
    "warmup_ratio": 0.06,
    "scheduler": "linear",
    "num_threads": 1,  # measured: 2 threads stall when the 2 cores are shared with other jobs
}
TWITTER_ROWS = 2000  # stratified twitter subset added to PhraseBank's training part (CPU time)
CANDIDATES: dict[str, dict[str, Any]] = {
    # MiniLM-L6 full fine-tune on PhraseBank only (the DESIGN baseline recipe, higher head lr)
    "minilm-pb": {"splits": "pb", "model": "all-minilm-l6-v2", "train": {"epochs": 3}},
    # the same on PhraseBank + the shipped synthetic corporate-news sentences (training only)
    "minilm-pbsyn": {"splits": "pbsyn", "model": "all-minilm-l6-v2", "train": {"epochs": 3}},
    # the same on PhraseBank + 2,000 tweets (shorter, noisier finance text)
    "minilm-pbtw": {"splits": "pbtw", "model": "all-minilm-l6-v2", "train": {"epochs": 2}},
    # domain-adaptive MLM on unlabelled finance text (training sentences + all tweets), then minilm-pb's recipe
    "minilm-dapt-pb": {"splits": "pb", "model": "@dapt", "train": {"epochs": 3}},
    # all-mpnet-base-v2 (MPNet-base, 110M) full fine-tune: the teacher distilled into MiniLM (2 threads:
    # ~3 s a step of 16 on a quiet 2-core machine, 25 min in all)
    "mpnet-pb": {
        "splits": "pb",
        "model": "all-mpnet-base-v2",
        "train": {"epochs": 3, "lr": 3e-5, "batch_size": 16, "num_threads": 2},
    },
    # the same on PhraseBank + the project's own synthetic corporate-news sentences (both MIT batches,
    # 3,521, training only: validation and test stay PhraseBank's); 2 epochs of the larger set
    "mpnet-pbsyn": {
        "splits": "pbsyn",
        "model": "all-mpnet-base-v2",
        "train": {"epochs": 2, "lr": 3e-5, "batch_size": 16, "num_threads": 2},
    },
    # SmolLM2-135M + LoRA (r=16 on all projections) with a classification head, time-capped
    "smollm2-lora-pb": {
        "splits": "pb",
        "model": "smollm2-135m-instruct",
        "method": {"kind": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"},
        "train": {"epochs": 1, "lr": 5e-4, "head_lr": 2e-3, "batch_size": 16, "max_minutes": 6},
    },
}
CHOSEN = "mpnet-pbsyn"  # best validation accuracy in benchmarks/sentiment.py (docs/sentiment_classifier.md)


def candidate_splits(kind: str, out_dir: Path, phrasebank_dir: Path, twitter_csv: Path | None) -> SplitInfo:
    """The training files of a candidate's ``splits`` kind; validation and test are PhraseBank's in all.

    ``pb``: PhraseBank's training part; ``pbtw``: + a stratified ``TWITTER_ROWS`` tweets (when
    ``twitter_csv`` exists); ``pbsyn``: + every shipped synthetic corporate-news sentence (MIT, no
    6-word run shared with PhraseBank, so none of its test sentences leaks in).
    """
    from apps.sentiment.classifier_data import load_labelled_jsonl, shipped_synthetic_jsonl

    if kind not in ("pb", "pbtw", "pbsyn"):
        raise ConfigurationError(f"splits kind {kind!r} is not pb, pbtw or pbsyn")
    twitter = twitter_csv if kind == "pbtw" else None
    extra = (
        [r for part in ("split", "more") for r in load_labelled_jsonl(shipped_synthetic_jsonl(part))]
        if kind == "pbsyn"
        else []
    )
    return prepare_splits(out_dir, phrasebank_dir, twitter, twitter_max_rows=TWITTER_ROWS, extra_train=extra)


def _train_description(counts: dict[str, int]) -> str:
    text = f"PhraseBank 50Agree train part ({counts['train_phrasebank']} rows)"
    if counts.get("train_twitter"):
        text += f" + {counts['train_twitter']} tweets (MIT)"
    if counts.get("train_synthetic"):
        text += f" + {counts['train_synthetic']} synthetic corporate-news sentences (MIT, kgnlp's own)"
    return text


def _now() -> datetime:
    return datetime.now(UTC)


def candidate_config(name: str, splits: SplitInfo, out_root: Path, model: str | None = None, **train: Any) -> RunConfig:
    """The ``RunConfig`` of candidate ``name`` on the given splits.

    Args:
        name: a key of ``CANDIDATES``.
        splits: written by ``prepare_splits``/``prepare_twitter_splits``.
        out_root: run directories go to ``out_root/name``.
        model: override the backbone (a folder or catalog name; needed for ``@dapt``).
        train: extra ``train`` overrides (e.g. ``epochs``, ``max_minutes``).

    Returns:
        The validated config.
    """
    from models.config import build_config

    if name not in CANDIDATES:
        raise ConfigurationError(f"candidate: {name!r} is not one of {sorted(CANDIDATES)}")
    spec = CANDIDATES[name]
    backbone = model or spec["model"]
    if backbone.startswith("@"):
        raise ConfigurationError(f"candidate {name!r}: pass model= (the {backbone} folder)")
    raw = {
        "task": "classify",
        "model": backbone,
        "output_dir": str(Path(out_root) / name),
        "labels": list(LABELS),
        "data": {"train": str(splits.train), "validation": str(splits.validation), "test": str(splits.test)},
        "method": spec.get("method", {"kind": "full"}),
        "train": {**_BASE_TRAIN, **spec.get("train", {}), **train},
    }
    return build_config(raw)


def fit_temperature(log_proba: np.ndarray, y: Sequence[int]) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(log_proba / T)`` (grid, then refined).

    Args:
        log_proba: ``(n, C)`` uncalibrated log-probabilities (or logits).
        y: true class ids.

    Returns:
        ``T`` in [0.05, 20].
    """
    import numpy as np

    z = np.asarray(log_proba, dtype=np.float64)
    yy = np.asarray(y)

    def nll(t: float) -> float:
        s = z / t
        s = s - s.max(1, keepdims=True)
        lse = np.log(np.exp(s).sum(1))
        return float((lse - s[np.arange(len(yy)), yy]).mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 200))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = np.exp(np.linspace(np.log(best) - 0.05, np.log(best) + 0.05, 101))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def expected_calibration_error(proba: np.ndarray, y: Sequence[int], bins: int = 15) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    import numpy as np

    p = np.asarray(proba)
    yy = np.asarray(y)
    conf = p.max(1)
    correct = (p.argmax(1) == yy).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def _softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    import numpy as np

    s = np.asarray(z, dtype=np.float64) / t
    s = s - s.max(1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(1, keepdims=True)


def evaluate_proba(proba: np.ndarray, y: Sequence[int], allagree: Sequence[int] | None = None) -> dict[str, float]:
    """Accuracy, macro-F1, log-loss, ECE (and accuracy on the AllAgree rows when flagged)."""
    import numpy as np

    from models.classify import classification_metrics

    out = classification_metrics(list(y), np.asarray(proba))
    out["ece"] = expected_calibration_error(proba, y)
    if allagree is not None and any(allagree):
        m = np.asarray(allagree, dtype=bool)
        out["allagree_accuracy"] = float((np.asarray(proba)[m].argmax(1) == np.asarray(y)[m]).mean())
        out["allagree_n"] = int(m.sum())
    return out


def read_split(path: Path) -> tuple[list[str], list[int], list[int]]:
    """``(texts, label ids, allagree flags)`` of a split CSV written by ``prepare_splits``."""
    import csv

    texts, y, agree = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.append(row["text"])
            y.append(LABELS.index(row["label"]))
            agree.append(int(row.get("allagree") or 0))
    return texts, y, agree


def register_model(
    home: Path,
    run_dirs: Sequence[Path],
    kind: str,
    splits: SplitInfo,
    data: dict[str, Any],
    weights: Sequence[float] | None = None,
    quantize: bool = True,
    max_len: int = 64,
    extra: dict[str, Any] | None = None,
    log: Log = print,
) -> Path:
    """Register trained full-weight run(s) as a served sentiment model.

    The folder is built in a temporary sibling: members' ``model/`` folders are copied, the
    served form (int8 when ``quantize``) is loaded from there, its temperature is fit on the
    validation split, test metrics are measured, the manifest is written, then the folder is
    renamed into place (``kgnlp.files.atomic_dir``).

    Args:
        home: ``KGNLP_HOME``.
        run_dirs: ``models.finetune`` runs with a ``model/`` folder (one, or several for a mean ensemble).
        kind: e.g. ``"minilm-ft"`` (the name is ``KIND-YYYYmmddTHHMMSS``).
        splits: the validation (temperature) and test (reported) files.
        data: what the model was trained on (recorded in the manifest).
        weights: member weights (default equal).
        quantize: serve with int8 dynamic quantization.
        max_len: truncation length at serving time.
        extra: more manifest fields (e.g. training minutes).
        log: progress lines.

    Returns:
        The registered folder.
    """
    import numpy as np

    from models.onnx_classifier import prune_cache

    if not run_dirs:
        raise ConfigurationError("run_dirs: need at least one trained run")
    for r in run_dirs:
        if not (Path(r) / "model").is_dir():
            raise NotFoundError(f"{r} has no model/ (register full fine-tuning runs)")
    created = _now()
    name = f"{kind}-{created.strftime('%Y%m%dT%H%M%S')}"
    final = models_dir(home) / name
    w = list(weights) if weights is not None else [1.0] * len(run_dirs)
    with atomic_dir(final) as tmp:
        members = []
        for i, (r, wi) in enumerate(zip(run_dirs, w, strict=True)):
            shutil.copytree(Path(r) / "model", tmp / "members" / str(i))
            members.append({"path": f"members/{i}", "weight": float(wi), "source_run": str(r)})
        manifest: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "created": created.isoformat(),
            "labels": list(LABELS),
            "data": data,
            "members": members,
            "max_len": max_len,
            "quantize": quantize,
            "format": "transformers safetensors members + JSON manifest",
            "calibration": {"temperature": 1.0},
            **(extra or {}),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        vx, vy, _ = read_split(splits.validation)
        tx, ty, tagree = read_split(splits.test)
        if quantize:
            manifest.update(_served_form(tmp, manifest, vx, vy, log))
            atomic_write_json(tmp / MANIFEST, manifest)
        clf = RegisteredClassifier(tmp).load()
        for member in clf._members or []:  # the forms tried on validation: only the served one stays cached
            prune_cache(member.folder, member.graph.path if member.graph else None)
        manifest["params"] = sum(m.params for m in clf._members or [])
        t0 = time.perf_counter()
        val_lp = clf.log_proba(vx)
        test_lp = val_lp if splits.test == splits.validation else clf.log_proba(tx)
        seconds = time.perf_counter() - t0
        temp = fit_temperature(val_lp, vy)
        before = evaluate_proba(_softmax(test_lp), ty, tagree)
        after = evaluate_proba(_softmax(test_lp, temp), ty, tagree)
        manifest["calibration"] = {
            "method": "temperature scaling on the validation split",
            "temperature": temp,
            "val_ece_before": expected_calibration_error(_softmax(val_lp), vy),
            "val_ece_after": expected_calibration_error(_softmax(val_lp, temp), vy),
            "test_ece_before": before["ece"],
            "test_ece_after": after["ece"],
        }
        manifest["metrics"] = {
            "test": after,
            "test_examples": len(ty),
            "eval_texts_per_s": round((len(vx) + (0 if test_lp is val_lp else len(tx))) / seconds, 1),
            "splits": splits.counts,
            "splits_fingerprint": splits.fingerprint,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        np.savez(tmp / "eval_log_proba.npz", val=val_lp, test=test_lp)  # for ensembles/audits; not loaded to serve
    log(
        f"registered {final}: test accuracy={after['accuracy']:.4f} macro_f1={after['macro_f1']:.4f} "
        f"T={temp:.3f} ECE {before['ece']:.4f}→{after['ece']:.4f}"
    )
    return final


QUANTIZE_TOLERANCE = 0.01  # validation accuracy an int8 form may lose against fp32
QUANTIZE_Z = 1.645  # ...counted at the one-sided 95% upper bound of the loss, paired over the texts


def int8_loss_bound(reference: Any, pred: Any, gold: Any) -> tuple[float, float, float]:
    """``(accuracy loss, its one-sided 95% upper bound, share of labels changed)`` of ``pred`` against
    the fp32 ``reference``, paired over the same texts: only the texts one gets right and the other
    wrong move the difference, so its standard error is ``sqrt(b + c - (b - c)^2 / n) / n``."""
    import numpy as np

    ref_ok, ok = np.asarray(reference) == np.asarray(gold), np.asarray(pred) == np.asarray(gold)
    n = max(len(ok), 1)
    b, c = float(np.sum(ref_ok & ~ok)), float(np.sum(~ref_ok & ok))
    loss = (b - c) / n
    se = float(np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0))) / n
    return loss, loss + QUANTIZE_Z * se, float(np.mean(np.asarray(pred) != np.asarray(reference)))


def _served_form(folder: Path, manifest: dict[str, Any], texts: list[str], y: list[int], log: Log) -> dict[str, Any]:
    """``quantize``/``keep_float`` manifest fields: the fastest form close to fp32, chosen on the
    validation texts only.

    An int8 form is close when the one-sided 95% upper bound of its validation accuracy loss
    against fp32 (:func:`int8_loss_bound`) is at most ``QUANTIZE_TOLERANCE``. A bare difference of
    accuracies is noise on a few hundred texts (a point is three of 310), and picking the best of a
    dozen forms by it picks luck: the PhraseBank-trained MPNet's int8 form with one layer in float
    passed at -0.96 point on 310 validation sentences (changing 4.2% of fp32's labels) and lost 1.2
    points on test. The bound counts how many labels a form changes, not only the net of them.

    Every linear layer int8 (the head in float) first; otherwise, when the form with every
    feed-forward output projection in float meets the bound, mixed precision by sensitivity: each
    projection is tried alone in float, then those with the lowest bound are kept in float one by
    one until the bound is met; otherwise fp32. The search ends where it would have ended anyway when
    all projections in float miss: the PhraseBank-trained MPNet (12 layers) tried 24 forms (most of
    the 8.8 min its served stage took) to reach fp32, and now tries 2. Per-tensor int8 handles those
    projections' inputs (outlier activations after GELU) worst: on the default MiniLM under torch the
    first layer's alone brought validation back from 0.824 to fp32's 0.841 at ~5% of the speed,
    where all six cost ~30%. What was tried goes into the manifest (``quantization``).
    """
    import numpy as np

    from apps.sentiment.classifier import HEAD_LAYERS, ffn_output_layers

    gold = np.asarray(y)

    def labels(quantize: bool, keep_float: tuple[str, ...]) -> Any:
        atomic_write_json(folder / MANIFEST, {**manifest, "quantize": quantize, "keep_float": list(keep_float)})
        return RegisteredClassifier(folder).load().log_proba(texts).argmax(1)

    reference = labels(False, HEAD_LAYERS)
    ref_acc = float(np.mean(reference == gold))
    tried: list[dict[str, Any]] = []
    bounds: dict[frozenset[str], float] = {}

    def judge(kept: tuple[str, ...]) -> float:
        """The form's loss bound (recorded in ``tried``; each set of float layers measured once)."""
        if frozenset(kept) in bounds:
            return bounds[frozenset(kept)]
        pred = labels(True, HEAD_LAYERS + kept)
        loss, bound, changed = int8_loss_bound(reference, pred, gold)
        tried.append(
            {"keep_float": list(kept), "val_accuracy": round(float(np.mean(pred == gold)), 4),
             "loss": round(loss, 4), "loss_bound": round(bound, 4), "labels_changed": round(changed, 4)}
        )  # fmt: skip
        bounds[frozenset(kept)] = bound
        return bound

    def close(bound: float) -> bool:
        return bound <= QUANTIZE_TOLERANCE + 1e-12

    chosen: dict[str, Any] | None = None
    if close(judge(())):
        chosen = {"quantize": True, "keep_float": list(HEAD_LAYERS)}
    else:
        ffn = ffn_output_layers(folder / manifest["members"][0]["path"])
        if close(judge(tuple(ffn))):  # the search below ends at this form at the latest
            alone = {name: judge((name,)) for name in ffn}
            kept: list[str] = []
            for name in sorted(alone, key=lambda n: alone[n]):  # the lowest bound first
                kept.append(name)
                if close(judge(tuple(kept))):
                    chosen = {"quantize": True, "keep_float": [*HEAD_LAYERS, *kept]}
                    break
    if chosen is None:
        chosen = {"quantize": False, "keep_float": list(HEAD_LAYERS)}
    log(f"served form: {chosen} (validation accuracy fp32 {ref_acc:.4f}; {len(tried)} int8 forms tried)")
    record = {
        "val_accuracy_fp32": round(ref_acc, 4), "int8_tried": tried, "tolerance": QUANTIZE_TOLERANCE,
        "rule": "int8 when the one-sided 95% upper bound of the paired validation accuracy loss <= tolerance",
    }  # fmt: skip
    return {**chosen, "quantization": record}


def _embedder(home: Path, embedder_path: Path | None = None) -> Path:
    if embedder_path is not None:
        return Path(embedder_path)
    from models.catalog import DEFAULT_EMBEDDER
    from models.provision import ModelCache

    return ModelCache(home).ensure(DEFAULT_EMBEDDER)


def _backbone(home: Path, name: str, embedder_path: Path | None) -> Path:
    """The folder of a candidate's backbone: MiniLM (or ``embedder_path``), else the catalog model, pulled."""
    from models.catalog import DEFAULT_EMBEDDER
    from models.provision import ModelCache

    if name == DEFAULT_EMBEDDER:
        return _embedder(home, embedder_path)
    return ModelCache(home).ensure(name)


DEFAULT_ARTEFACT = REPO / "data" / "finance" / "sentiment_model"  # built by benchmarks/sentiment_default.py
_ARTEFACT_FILES = ("adapter_model.safetensors", "adapter_config.json", "config.json")


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_artefact(artefact: Path) -> dict[str, Any]:
    """The artefact's ``config.json``, after checking its files and their checksums.

    Raises:
        NotFoundError: the folder or one of its files is missing.
        ModelUnavailableError: a file does not match the checksum recorded in ``config.json``.
    """
    missing = [n for n in _ARTEFACT_FILES if not (artefact / n).is_file()]
    if missing:
        raise NotFoundError(f"default sentiment artefact {artefact}: missing {', '.join(missing)}")
    try:
        config = json.loads((artefact / "config.json").read_text())
    except ValueError as e:
        raise ModelUnavailableError(f"default sentiment artefact {artefact}: unreadable config.json: {e}") from e
    for name, digest in config.get("files", {}).items():
        if file_sha256(artefact / name) != digest:
            raise ModelUnavailableError(
                f"default sentiment artefact {artefact}: {name} does not match its sha256 in config.json "
                "(corrupted or edited; restore it from git, or run `kgnlp sentiment setup --train`)"
            )
    if list(config.get("labels", [])) != list(LABELS):
        raise ModelUnavailableError(f"default sentiment artefact {artefact}: labels {config.get('labels')} != {LABELS}")
    return config


_EXTRA_DATA_KEYS = (
    "extra_file", "extra_file_sha256", "extra_licence", "extra_counts", "extra_more_file", "extra_more_file_sha256"
)  # fmt: skip


def build_default_from_artefact(
    home: Path,
    artefact: Path | None = None,
    embedder_path: Path | None = None,
    twitter_csv: Path | None = None,
    log: Log = print,
) -> Path:
    """Register the default model from the shipped LoRA adapter + head: no training (seconds).

    The adapter is merged into all-MiniLM-L6-v2 and saved as an ordinary transformers classifier,
    then ``register_model`` serves it as every other model (int8, temperature fit on the same
    validation split the build used, metrics measured on its test split).

    Args:
        home: ``KGNLP_HOME``.
        artefact: the folder written by ``benchmarks/sentiment_default.py`` (default ``DEFAULT_ARTEFACT``).
        embedder_path: the all-MiniLM-L6-v2 folder (default: pulled into the model cache).
        twitter_csv: the shipped tweets (default ``data/finance/sentiment/``), for the validation/test split.
        log: progress lines.

    Returns:
        The registered model folder.

    Raises:
        NotFoundError: the artefact is missing (``train_default`` then trains instead).
        ModelUnavailableError: the artefact is corrupted, or the base model or split differs from the build's.
    """
    import torch

    from models.classify import build_sequence_classifier

    artefact = Path(artefact) if artefact else DEFAULT_ARTEFACT
    config = _read_artefact(artefact)
    started = time.monotonic()
    base = _embedder(home, embedder_path)
    want = config.get("base_model", {}).get("model_safetensors_sha256")
    if want and file_sha256(base / "model.safetensors") != want:
        raise ModelUnavailableError(
            f"{base}/model.safetensors is not the base model the default sentiment adapter was trained on "
            f"(sha256 {want[:12]}…); run `kgnlp sentiment setup --train`"
        )
    src = Path(twitter_csv) if twitter_csv else shipped_twitter_csv()
    work = Path(home) / "sentiment" / "work" / "default"
    split = config.get("split", {})
    splits, _ = prepare_twitter_three_way_splits(work / "splits", src, seed=int(split.get("seed", 13)))
    if split.get("fingerprint") and split["fingerprint"] != splits.fingerprint:
        raise ModelUnavailableError(
            f"{src}: the validation/test split differs from the one the artefact was built on "
            f"({splits.fingerprint} != {split['fingerprint']}): the reported metrics would not hold"
        )
    run = work / "runs" / f"artefact-{_now().strftime('%Y%m%dT%H%M%S')}"
    try:
        import peft

        torch.manual_seed(0)  # the fresh head is replaced by the adapter's; seeded anyway
        model, tokenizer = build_sequence_classifier(base, list(LABELS))
        with warnings.catch_warnings():  # peft reads transformers' deprecated alias: not the user's concern
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            merged = peft.PeftModel.from_pretrained(model, str(artefact)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelUnavailableError(f"default sentiment artefact {artefact}: cannot load the adapter: {e}") from e
    with atomic_dir(run / "model") as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    log(f"merged {artefact.name} into {base.name} in {time.monotonic() - started:.1f} s")
    build_metrics: dict[str, Any] = {}
    if (artefact / "metrics.json").is_file():
        build_metrics = json.loads((artefact / "metrics.json").read_text())
    data_info = config.get("data", {})
    folder = register_model(
        home,
        [run],
        "minilm-twitter-lora",
        splits,
        data={
            "train": data_info.get("train_description")
            or f"{src.name} (twitter financial news, MIT): the stratified 80% training part "
            f"({splits.counts['train']} tweets) at build time",
            **(
                {"extra": {k: data_info[k] for k in _EXTRA_DATA_KEYS if k in data_info}}
                if "extra_file" in data_info
                else {}
            ),
            "validation": f"stratified 10% of the tweets ({splits.counts['val']}): temperature"
            + (
                "; with 10% of the synthetic sentences: recipe choice"
                if "extra_file" in data_info
                else ", recipe choice"
            ),
            "test": f"stratified 10% of the tweets ({splits.counts['test']}): reported",
            "counts": splits.counts,
            "split_seed": int(split.get("seed", 13)),
            "split_fingerprint": splits.fingerprint,
            "source": str(data_info.get("file", src.name)),
            "licence": data_info.get("licence", "MIT"),
            "note": "default model of `kgnlp sentiment setup`, built from the shipped adapter (no training)",
        },
        max_len=int(config.get("max_len", 64)),
        extra={
            "licence": "model: MIT training data (twitter financial news"
            + (", kgnlp's synthetic corporate-news sentences" if "extra_file" in data_info else "")
            + ") + Apache-2.0 base (all-MiniLM-L6-v2); no PhraseBank",
            "recipe": {"name": config.get("name"), "candidate": config.get("candidate"), **config.get("recipe", {})},
            "artefact": {
                "path": str(artefact),
                "files": config.get("files", {}),
                "base_model": config.get("base_model"),
            },
        },
        log=log,
    )
    seconds = round(time.monotonic() - started, 1)
    manifest = json.loads((folder / MANIFEST).read_text())
    keep = ("measured", "chosen", "tweet_test", "validation", "tweet_validation", "news_test", "phrasebank_50agree",
            "train_minutes", "cpu")  # fmt: skip
    manifest["metrics"]["build"] = {  # the artefact's metrics.json, as measured when it was built
        "measured_by": build_metrics.get("measured_by", config.get("reproduce")),
        **{k: build_metrics[k] for k in keep if k in build_metrics},
    }
    manifest["setup_seconds"] = seconds
    atomic_write_json(folder / MANIFEST, manifest)
    shutil.rmtree(run, ignore_errors=True)  # the registered copy is all that is needed
    log(f"default sentiment model registered from the shipped artefact in {seconds} s")
    return folder


def _superseded_default(folder: Path, artefact: Path | None) -> bool:
    """``folder`` is a default model built from a shipped adapter other than the one shipped now
    (a user's own trained model, or an unreadable artefact, is never superseded)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        shipped = _read_artefact(Path(artefact) if artefact else DEFAULT_ARTEFACT)
    except (OSError, ValueError, NotFoundError, ModelUnavailableError):
        return False
    built = manifest.get("artefact", {}).get("files", {}).get("adapter_model.safetensors")
    now = shipped.get("files", {}).get("adapter_model.safetensors")
    return manifest.get("kind") == "minilm-twitter-lora" and bool(built) and bool(now) and built != now


def train_default(
    home: Path,
    twitter_csv: Path | None = None,
    embedder_path: Path | None = None,
    max_steps: int = 300,
    max_minutes: float = 4.0,
    force: bool = False,
    log: Log = print,
    train: bool = False,
    artefact: Path | None = None,
) -> Path:
    """Build the out-of-the-box model from the shipped twitter set (no ``../shared``).

    By default the shipped adapter (``data/finance/sentiment_model/``, see
    ``build_default_from_artefact``) is merged into MiniLM in seconds; ``train=True``, or a
    missing artefact, trains MiniLM on the tweets instead (the earlier default, minutes):

    A fixed number of steps (the LR schedule is planned for them), so the model is the same on a
    quiet machine and a loaded one (slower, not worse); ``max_minutes`` is only a safety cap.
    Balanced class weights: 65% of the tweets are neutral, and without them a short run
    mostly predicts neutral (measured: macro-F1 0.49 after 150 unweighted steps).
    Idempotent: returns the newest registered model at once unless ``force`` or unless it is a
    default built from an earlier shipped adapter (an upgraded checkout then registers the current
    one; a model the user trained is kept); a file lock keeps concurrent set-ups from training twice.

    Args:
        home: ``KGNLP_HOME``.
        twitter_csv: the labelled tweets (default: ``data/finance/sentiment/``).
        embedder_path: the all-MiniLM-L6-v2 folder (default: pulled into the model cache).
        max_steps: optimiser steps of 32 tweets (300: about 1.1 passes over the 8.6k training tweets).
        max_minutes: safety cap on training time (keeps ``kgnlp sentiment setup`` within ~5 minutes
            on a slow or busy machine, at the cost of a cut learning-rate schedule there).
        force: rebuild even when a model is registered.
        log: progress lines.
        train: train instead of using the shipped artefact.
        artefact: the shipped artefact folder (default ``DEFAULT_ARTEFACT``).

    Returns:
        The registered model folder.

    Raises:
        ModelUnavailableError: the artefact is present but corrupted (use ``train=True``).
    """
    from filelock import FileLock

    from models.finetune import finetune

    root = Path(home) / "sentiment"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".setup.lock")):
        existing = registered_models(home)
        shipped = twitter_csv is None or Path(twitter_csv).resolve() == shipped_twitter_csv().resolve()
        stale = bool(existing) and not train and shipped and _superseded_default(existing[-1], artefact)
        if existing and not force:
            if not stale:
                log(f"sentiment model already registered: {existing[-1]} (use --force to rebuild)")
                return existing[-1]
            log(f"{existing[-1].name} was built from an earlier shipped adapter: registering the current one")
        if not train and shipped:  # another CSV means: train on it
            try:
                return build_default_from_artefact(home, artefact, embedder_path, twitter_csv, log=log)
            except NotFoundError as e:
                log(f"{e}: training the default model instead (a few minutes)")
        started = time.monotonic()
        src = Path(twitter_csv) if twitter_csv else shipped_twitter_csv()
        work = root / "work" / "default"
        splits = prepare_twitter_splits(work / "splits", src)
        cfg = candidate_config(
            "minilm-pbtw",
            splits,
            work / "runs",
            model=str(_embedder(home, embedder_path)),
            max_steps=max_steps,
            max_minutes=max_minutes,
            eval_every=max_steps,
            class_weights="balanced",
            num_threads=None,  # a user's set-up owns the machine: every core (the benchmarks pin 1)
            lr=1.5e-4,
            head_lr=2e-3,
        )
        cfg = cfg.model_copy(update={"output_dir": work / "runs" / f"default-{_now().strftime('%Y%m%dT%H%M%S')}"})
        result = finetune(cfg, resume=False, log=log)
        folder = register_model(
            home,
            [cfg.output_dir],
            "minilm-twitter",
            splits,
            data={
                "train": f"{src.name} (twitter financial news, MIT): {result['steps']} steps of 32 "
                f"from {result['train_examples']} training tweets",
                "note": "default model of `kgnlp sentiment setup`; its test split is the held-out 10% of the tweets",
            },
            extra={"train_minutes": round((time.monotonic() - started) / 60, 2), "recipe": "default"},
            log=log,
        )
        shutil.rmtree(cfg.output_dir, ignore_errors=True)  # the registered copy is all that is needed
        return folder


def ensure_default_model(home: Path, embedder_path: Path | None = None, log: Log = print) -> Path:
    """The newest registered model, building the default one first when none is (for tests and demos;
    from the shipped artefact, seconds)."""
    existing = registered_models(home)
    return existing[-1] if existing else train_default(home, embedder_path=embedder_path, log=log)


def parse_recipe(recipe: str) -> tuple[str, list[str], int, str]:
    """Split a served recipe into ``(kind, candidate runs, student layers, transfer set)``.

    ``NAME`` (a full fine-tuning key of ``CANDIDATES``), ``distill:TEACHER:LAYERS[:TRANSFER]`` (a
    MiniLM student with ``LAYERS`` layers distilled from TEACHER on ``pbtw``, PhraseBank's training
    part + 2,000 tweets, the default, or ``pb``, PhraseBank's training part only) or
    ``ensemble:A+B`` (equal-weight mean of full fine-tuning runs).
    """
    parts = recipe.split(":")
    transfer = "pbtw"
    if parts[0] == "distill" and len(parts) in (3, 4) and parts[2].isdigit() and parts[3:] in ([], ["pb"], ["pbtw"]):
        names, kind, layers = [parts[1]], "distill", int(parts[2])
        transfer = parts[3] if len(parts) == 4 else transfer
        if not 1 <= layers <= 6:
            raise ConfigurationError(f"recipe: {recipe!r}: the MiniLM student has 1 to 6 layers")
    elif parts[0] == "ensemble" and len(parts) == 2:
        names, kind, layers = parts[1].split("+"), "ensemble", 0
    elif len(parts) == 1:
        names, kind, layers = [recipe], "single", 0
    else:
        raise ConfigurationError(f"recipe: {recipe!r} is not NAME, distill:TEACHER:LAYERS[:pb|pbtw] or ensemble:A+B")
    for n in names:
        spec = CANDIDATES.get(n)
        if spec is None or spec.get("method", {"kind": "full"})["kind"] != "full":
            raise ConfigurationError(f"recipe: {n!r} is not a full fine-tuning candidate of {sorted(CANDIDATES)}")
    return kind, names, layers, transfer


def train_chosen(
    home: Path,
    data_dir: Path | None = None,
    recipe: str = CHOSEN,
    work_dir: Path | None = None,
    embedder_path: Path | None = None,
    train_overrides: dict[str, Any] | None = None,
    log: Log = print,
) -> Path:
    """Train the chosen configuration on PhraseBank (+ tweets or synthetic sentences, per recipe) and register it.

    Args:
        home: ``KGNLP_HOME``.
        data_dir: folder holding ``financial_phrasebank/`` and ``twitter_financial_news_sentiment/``
            (default ``../shared/data`` beside the checkout).
        recipe: see ``parse_recipe`` (default ``CHOSEN``, the benchmark's pick).
        work_dir: splits and run directories (default ``home/sentiment/work``).
        embedder_path: the all-MiniLM-L6-v2 folder (default: pulled into the model cache).
        train_overrides: ``train`` fields replaced in every run (e.g. ``{"max_steps": 2}`` in tests).
        log: progress lines.

    Returns:
        The registered model folder.
    """
    from apps.sentiment.classifier_data import REPO
    from models.config import DistillConfig
    from models.finetune import finetune

    kind, names, layers, transfer = parse_recipe(recipe)
    data_dir = Path(data_dir) if data_dir else REPO.parent / "shared" / "data"
    pb = data_dir / "financial_phrasebank"
    tw = data_dir / "twitter_financial_news_sentiment" / "sent_train.csv"
    if not pb.is_dir():
        raise NotFoundError(f"PhraseBank not found in {data_dir} (pass --data DIR)")
    started = time.monotonic()
    stamp = _now().strftime("%Y%m%dT%H%M%S")
    work = Path(work_dir) if work_dir else Path(home) / "sentiment" / "work"

    def splits_for(which: str) -> SplitInfo:
        return candidate_splits(which, work / f"splits-{which}", pb, tw if tw.is_file() else None)

    runs: list[Path] = []
    for name in names:
        spec = CANDIDATES[name]
        splits = splits_for(spec["splits"])
        if spec["model"] == "@dapt":
            model = str(_dapt(home, splits, tw if tw.is_file() else None, work / "dapt", embedder_path, log))
        else:
            model = str(_backbone(home, spec["model"], embedder_path))
        cfg = candidate_config(name, splits, work / "runs", model=model, **(train_overrides or {}))
        cfg = cfg.model_copy(update={"output_dir": work / "runs" / f"{name}-{stamp}"})
        finetune(cfg, resume=False, log=log)
        runs.append(cfg.output_dir)
    # validation and test are PhraseBank's only, the same bytes in every kind; the counts describe the data
    splits = splits_for(transfer if kind == "distill" else CANDIDATES[names[0]]["splits"])
    if kind == "distill":
        from models.prune import truncate_layers

        student = truncate_layers(work / f"student_l{layers}", layers, _embedder(home, embedder_path))
        recipe_of = {"pb": "minilm-pb", "pbtw": "minilm-pbtw"}[transfer]
        cfg = candidate_config(recipe_of, splits, work / "runs", model=str(student), **(train_overrides or {}))
        cfg = cfg.model_copy(
            update={
                "output_dir": work / "runs" / f"distill-{stamp}",
                "distill": DistillConfig(teacher=runs[0], temperature=2.0, alpha=0.7),
            }
        )
        finetune(cfg, resume=False, log=log)
        runs = [cfg.output_dir]
    folder = register_model(
        home,
        runs,
        recipe.replace(":", "-").replace("+", "-"),
        splits,
        data={
            "train": _train_description(splits.counts),
            "validation": f"PhraseBank 50Agree, stratified 8% ({splits.counts['val']}: temperature)",
            "test": f"PhraseBank 50Agree, stratified 24% ({splits.counts['test']}; AllAgree part reported separately)",
            "source": str(data_dir),
            "licence_note": "PhraseBank is CC BY-NC-SA 3.0: this model is for non-commercial use",
        },
        extra={
            "train_minutes": round((time.monotonic() - started) / 60, 2),
            "recipe": recipe,
            **({"train_overrides": dict(train_overrides)} if train_overrides else {}),
        },
        log=log,
    )
    for r in runs:
        shutil.rmtree(r / "checkpoints", ignore_errors=True)
    return folder


DAPT_STEPS = 120  # MLM steps of 32 texts


def dapt_texts(splits: SplitInfo, twitter_csv: Path | None) -> list[str]:
    """Unlabelled finance text for domain-adaptive MLM: the training texts + every tweet, shuffled.

    PhraseBank validation/test sentences are excluded (no transductive peeking).
    """
    import random

    from apps.sentiment.classifier_data import load_twitter

    texts = list(
        dict.fromkeys(read_split(splits.train)[0] + ([t for t, _ in load_twitter(twitter_csv)] if twitter_csv else []))
    )
    random.Random(0).shuffle(texts)
    return texts


def _dapt(home: Path, splits: SplitInfo, tw: Path | None, out: Path, embedder_path: Path | None, log: Log) -> Path:
    """Domain-adaptive MLM of MiniLM (labels unused; validation/test excluded)."""
    from models.pretrain import continue_pretraining

    if (out / "config.json").is_file():
        return out
    texts = dapt_texts(splits, tw)
    stats = continue_pretraining(
        _embedder(home, embedder_path), texts, out, "mlm", 1, 5e-5, 32, 64, max_steps=DAPT_STEPS
    )
    log(f"domain-adaptive MLM: {json.dumps(stats)}")
    return out

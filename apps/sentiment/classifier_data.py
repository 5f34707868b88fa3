"""Sentiment training data: Financial PhraseBank and the twitter financial-news set, mapped to three labels.

- PhraseBank (Malo et al. 2014, CC BY-NC-SA 3.0): ``Sentences_<level>.txt``, ``sentence@label``,
  latin-1, split on the last ``@``. Non-commercial: read from ``../shared/data``, never shipped.
- Twitter financial news (zeroshot/twitter-financial-news-sentiment, MIT per the dataset card):
  ``text,label`` CSV with 0 = bearish → negative, 1 = bullish → positive, 2 = neutral. A copy
  ships in ``data/finance/sentiment/`` and builds the default model.
- Synthetic corporate-news sentences (the project's own, MIT): ``{"text", "label"}`` JSON lines in
  ``data/finance/sentiment/``, written to give the default model the press-release register the
  tweets lack (see that folder's ``SOURCE.md``); mixed into the default model's training.

``prepare_splits`` writes ``train.csv``/``val.csv``/``test.csv`` (``text,label`` + ``source``,
``allagree``) that a ``models.config.RunConfig`` names as its explicit data files. PhraseBank is
de-duplicated by text before a stratified split, so no sentence is both trained and tested on;
validation and test hold PhraseBank only (the target), twitter rows only ever go to train.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kgnlp.errors import NotFoundError, ValidationError
from kgnlp.files import atomic_write_json, atomic_write_text

__all__ = [
    "LABELS",
    "TWITTER_LABELS",
    "SplitInfo",
    "load_labelled_jsonl",
    "load_phrasebank",
    "load_twitter",
    "mix_in_sentences",
    "prepare_splits",
    "prepare_twitter_splits",
    "prepare_twitter_three_way_splits",
    "shipped_synthetic_jsonl",
    "shipped_twitter_csv",
]

LABELS = ("negative", "neutral", "positive")
TWITTER_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}
REPO = Path(__file__).resolve().parents[2]


def shipped_twitter_csv() -> Path:
    """The redistributable twitter set shipped with the project (``data/finance/sentiment/``)."""
    return REPO / "data" / "finance" / "sentiment" / "twitter_financial_news_train.csv"


def shipped_synthetic_jsonl(part: str = "split") -> Path:
    """The project's own synthetic corporate-news sentences (``data/finance/sentiment/``).

    ``part``: ``split`` (the first batch: split into train/validation/test) or ``more`` (the second
    batch: training only, so that the validation and test parts keep their meaning).
    """
    names = {"split": "synthetic_corporate_news.jsonl", "more": "synthetic_corporate_news_more.jsonl"}
    if part not in names:
        raise ValidationError(f"synthetic part {part!r}: expected one of {sorted(names)}")
    return REPO / "data" / "finance" / "sentiment" / names[part]


def load_labelled_jsonl(path: Path) -> list[tuple[str, str]]:
    """Read ``{"text": ..., "label": negative|neutral|positive}`` lines as ``(text, label)`` pairs."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"labelled sentences not found: {path}")
    out: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValidationError(f"{path}:{n}: not JSON: {e}") from e
        text, label = str(row.get("text", "")).strip(), row.get("label")
        if not text or label not in LABELS:
            raise ValidationError(f"{path}:{n}: expected a text and a label in {LABELS}, got {label!r}")
        out.append((text, label))
    return out


def load_phrasebank(folder: Path, level: str = "50Agree") -> list[tuple[str, str]]:
    """Read ``Sentences_<level>.txt`` as ``(sentence, label)`` pairs, first occurrence of each text kept.

    Args:
        folder: the ``financial_phrasebank`` folder.
        level: ``50Agree``, ``66Agree``, ``75Agree`` or ``AllAgree``.

    Returns:
        De-duplicated pairs in file order.
    """
    path = Path(folder) / f"Sentences_{level}.txt"
    if not path.is_file():
        raise NotFoundError(f"PhraseBank file not found: {path}")
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition("@")
        label = label.strip()
        if not sep or label not in LABELS:
            raise ValidationError(f"{path}:{n}: expected 'sentence@label', got {line[-40:]!r}")
        text = text.strip()
        if text not in seen:
            seen.add(text)
            out.append((text, label))
    return out


def load_twitter(path: Path) -> list[tuple[str, str]]:
    """Read the twitter financial-news CSV (``text,label`` with 0/1/2) as ``(text, label)`` pairs."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"twitter sentiment file not found: {path}")
    out: list[tuple[str, str]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            label = TWITTER_LABELS.get(str(row.get("label", "")).strip())
            if label is None or not row.get("text"):
                raise ValidationError(f"{path}:{n}: expected text and label 0/1/2, got {row.get('label')!r}")
            out.append((row["text"].strip(), label))
    return out


@dataclass(frozen=True)
class SplitInfo:
    """What ``prepare_splits`` wrote."""

    train: Path
    validation: Path
    test: Path
    counts: dict[str, int]
    fingerprint: str


def _write(path: Path, rows: list[tuple[str, str, str, int]]) -> None:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "label", "source", "allagree"])
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _fingerprint(*parts: list[tuple[str, str, str, int]]) -> str:
    h = hashlib.sha256()
    for rows in parts:
        for r in rows:
            h.update("\t".join(map(str, r)).encode() + b"\n")
        h.update(b"--\n")
    return h.hexdigest()[:16]


def prepare_splits(
    out_dir: Path,
    phrasebank_dir: Path,
    twitter_csv: Path | None = None,
    val_fraction: float = 0.08,
    test_fraction: float = 0.24,
    seed: int = 13,
    twitter_max_rows: int | None = None,
    extra_train: Sequence[tuple[str, str]] = (),
    extra_source: str = "synthetic",
) -> SplitInfo:
    """Stratified PhraseBank-50Agree train/validation/test (+ twitter rows in train) as CSV files.

    Args:
        out_dir: where ``train.csv``, ``val.csv``, ``test.csv`` and ``splits.json`` go.
        phrasebank_dir: the ``financial_phrasebank`` folder.
        twitter_csv: twitter ``sent_train.csv`` to add to the training part (None: PhraseBank only).
        val_fraction: PhraseBank share for validation (temperature and model selection).
        test_fraction: PhraseBank share for the test (reported, never tuned on); 24% gives 928
            sentences, so one sentence moves accuracy by 0.11 points (15% gave 579).
        seed: split seed.
        twitter_max_rows: keep a stratified subset of this many tweets (CPU time).
        extra_train: more ``(text, label)`` rows for the training part only (validation and test
            stay PhraseBank's, the same bytes as without them), tagged ``extra_source``.
        extra_source: the ``source`` column of ``extra_train`` rows.

    Returns:
        The written paths, row counts and a fingerprint of the contents.
    """
    from models.data import stratified_split

    pb = load_phrasebank(phrasebank_dir, "50Agree")
    allagree = {t for t, _ in load_phrasebank(phrasebank_dir, "AllAgree")}
    tr, va, te = stratified_split([y for _, y in pb], [val_fraction, test_fraction], seed)

    def rows(idx: list[int]) -> list[tuple[str, str, str, int]]:
        return [(pb[i][0], pb[i][1], "phrasebank", int(pb[i][0] in allagree)) for i in idx]

    train, val, test = rows(tr), rows(va), rows(te)
    n_pb_train = len(train)
    if twitter_csv is not None:
        tw = load_twitter(twitter_csv)
        if twitter_max_rows is not None and twitter_max_rows < len(tw):
            keep = stratified_split([y for _, y in tw], [1 - twitter_max_rows / len(tw)], seed)[0]
            tw = [tw[i] for i in keep]
        train += [(t, y, "twitter", 0) for t, y in tw]
    n_twitter = len(train) - n_pb_train
    train += [(t, y, extra_source, 0) for t, y in extra_train]
    out_dir = Path(out_dir)
    paths = SplitInfo(out_dir / "train.csv", out_dir / "val.csv", out_dir / "test.csv", {}, "")
    _write(paths.train, train)
    _write(paths.validation, val)
    _write(paths.test, test)
    counts = {
        "train": len(train),
        "train_phrasebank": n_pb_train,
        "train_twitter": n_twitter,
        "val": len(val),
        "test": len(test),
        "test_allagree": sum(r[3] for r in test),
    }
    if extra_train:
        counts[f"train_{extra_source}"] = len(extra_train)
    info = SplitInfo(paths.train, paths.validation, paths.test, counts, _fingerprint(train, val, test))
    atomic_write_json(out_dir / "splits.json", {"counts": counts, "fingerprint": info.fingerprint, "seed": seed})
    return info


def prepare_twitter_splits(out_dir: Path, twitter_csv: Path, val_fraction: float = 0.1, seed: int = 13) -> SplitInfo:
    """Twitter-only train/validation split (the default model built from shipped data; no test part).

    The validation part fits the calibration temperature and doubles as the reported test
    (the model is not selected on it: a fixed recipe trains a fixed number of epochs).
    """
    from models.data import stratified_split

    tw = load_twitter(twitter_csv)
    tr, va = stratified_split([y for _, y in tw], [val_fraction], seed)
    train = [(tw[i][0], tw[i][1], "twitter", 0) for i in tr]
    val = [(tw[i][0], tw[i][1], "twitter", 0) for i in va]
    out_dir = Path(out_dir)
    info = SplitInfo(
        out_dir / "train.csv",
        out_dir / "val.csv",
        out_dir / "val.csv",
        {"train": len(train), "val": len(val), "test": len(val), "test_allagree": 0},
        _fingerprint(train, val),
    )
    _write(info.train, train)
    _write(info.validation, val)
    atomic_write_json(out_dir / "splits.json", {"counts": info.counts, "fingerprint": info.fingerprint, "seed": seed})
    return info


def prepare_twitter_three_way_splits(
    out_dir: Path,
    twitter_csv: Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 13,
) -> tuple[SplitInfo, dict[str, list[int]]]:
    """Twitter-only stratified train/validation/test (the shipped default model's build and set-up).

    Validation picks the recipe and fits the calibration temperature; test is reported once.

    Args:
        out_dir: where ``train.csv``, ``val.csv``, ``test.csv`` and ``splits.json`` go.
        twitter_csv: the labelled tweets (``text,label`` with 0/1/2).
        val_fraction: share of each class for validation.
        test_fraction: share of each class for the test.
        seed: split seed.

    Returns:
        ``(SplitInfo, {"validation": row indices, "test": row indices})`` (0-based data rows of
        the CSV; train is every other row).
    """
    from models.data import stratified_split

    tw = load_twitter(twitter_csv)
    tr, va, te = stratified_split([y for _, y in tw], [val_fraction, test_fraction], seed)

    def rows(idx: list[int]) -> list[tuple[str, str, str, int]]:
        return [(tw[i][0], tw[i][1], "twitter", 0) for i in idx]

    train, val, test = rows(tr), rows(va), rows(te)
    out_dir = Path(out_dir)
    counts = {"train": len(train), "val": len(val), "test": len(test), "test_allagree": 0}
    info = SplitInfo(
        out_dir / "train.csv", out_dir / "val.csv", out_dir / "test.csv", counts, _fingerprint(train, val, test)
    )
    _write(info.train, train)
    _write(info.validation, val)
    _write(info.test, test)
    atomic_write_json(out_dir / "splits.json", {"counts": counts, "fingerprint": info.fingerprint, "seed": seed})
    return info, {"validation": list(va), "test": list(te)}


def mix_in_sentences(
    out_dir: Path,
    base: SplitInfo,
    extra: list[tuple[str, str]],
    source: str,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 13,
    train_only: list[tuple[str, str]] | None = None,
) -> tuple[SplitInfo, Path, dict[str, list[int]]]:
    """``base`` with a stratified split of ``extra`` added to its train and validation files.

    The test file stays ``base``'s (the reported figure keeps its meaning); the held-out part of
    ``extra`` goes to a file of its own, ``extra_test.csv``, reported beside it. ``train_only``
    rows join the training file alone: the validation and held-out files are the same bytes as
    without them, so runs with and without them are compared on one validation set.

    Returns:
        ``(SplitInfo of the mixed files, extra_test.csv, {"validation": .., "test": ..} indices of extra)``.
    """
    from models.data import stratified_split

    tr, va, te = stratified_split([y for _, y in extra], [val_fraction, test_fraction], seed)

    def rows(idx: list[int]) -> list[tuple[str, str, str, int]]:
        return [(extra[i][0], extra[i][1], source, 0) for i in idx]

    def read(path: Path) -> list[tuple[str, str, str, int]]:
        with open(path, newline="", encoding="utf-8") as f:
            return [(r["text"], r["label"], r["source"], int(r["allagree"])) for r in csv.DictReader(f)]

    more = [(t, y, f"{source}_more", 0) for t, y in train_only or []]
    train, val, test = read(base.train) + rows(tr) + more, read(base.validation) + rows(va), read(base.test)
    out_dir = Path(out_dir)
    counts = {**base.counts, "train": len(train), "val": len(val), f"{source}_train": len(tr), f"{source}_val": len(va)}
    counts[f"{source}_test"] = len(te)
    if more:
        counts[f"{source}_more_train"] = len(more)
    info = SplitInfo(
        out_dir / "train.csv", out_dir / "val.csv", base.test, counts, _fingerprint(train, val, test, rows(te))
    )
    _write(info.train, train)
    _write(info.validation, val)
    _write(out_dir / "extra_test.csv", rows(te))
    atomic_write_json(out_dir / "splits.json", {"counts": counts, "fingerprint": info.fingerprint, "seed": seed})
    return info, out_dir / "extra_test.csv", {"validation": list(va), "test": list(te)}

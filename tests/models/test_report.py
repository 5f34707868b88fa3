"""``kgnlp models report``: quality from each run's metrics, efficiency measured per row in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kgnlp.errors import NotFoundError


def _run(root: Path, name: str, embedder_path: Path, hidden: int, layers: int, accuracy: float) -> Path:
    """A classifier run directory as ``finetune`` leaves it (model/, labels.json, config.yaml, metrics.json)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    run = root / name
    tok = AutoTokenizer.from_pretrained(str(embedder_path))
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=2,
    )  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(str(run / "model"))
    tok.save_pretrained(str(run / "model"))
    (run / "labels.json").write_text(json.dumps(["neg", "pos"]))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"max_len": 32}}))
    metrics = {"method": "full", "test": {"accuracy": accuracy, "macro_f1": accuracy - 0.01}, "train_seconds": 60}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_each_row_has_its_own_peak_memory(tmp_path: Path, embedder_path: Path) -> None:
    """The large model first: in one process the small one would inherit its peak (ru_maxrss only grows)."""
    from models.report import collect_rows, print_table

    big = _run(tmp_path, "big", embedder_path, hidden=768, layers=4, accuracy=0.9)  # ~52M params, ~210 MB fp32
    small = _run(tmp_path, "small", embedder_path, hidden=32, layers=2, accuracy=0.8)  # ~1M params
    rows = collect_rows([big, small])
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["big", "small"]
    assert by["big"]["accuracy"] == 0.9 and by["small"]["macro_f1"] == pytest.approx(0.79)
    assert by["big"]["params"] > 20 * by["small"]["params"]
    assert by["big"]["model_rss_mb"] - by["small"]["model_rss_mb"] > 120, rows
    assert by["small"]["peak_rss_mb"] < by["big"]["peak_rss_mb"] - 120, rows
    assert all(r["latency_ms"] > 0 and r["throughput"] > 0 and r["disk_mb"] > 0 for r in rows)
    assert by["big"]["disk_mb"] > 10 * by["small"]["disk_mb"]
    print_table(rows)


def test_unmeasured_rows_and_a_run_without_metrics(tmp_path: Path, embedder_path: Path) -> None:
    from models.report import collect_rows

    small = _run(tmp_path, "small", embedder_path, hidden=32, layers=2, accuracy=0.8)
    (row,) = collect_rows([small], measure=False)
    assert row["accuracy"] == 0.8 and row["train_minutes"] == 1.0 and "peak_rss_mb" not in row
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"metrics\.json"):
        collect_rows([tmp_path / "empty"])

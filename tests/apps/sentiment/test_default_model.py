"""The shipped default sentiment model (issue #21): artefact files, set-up from them, provenance, fallbacks."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from apps.sentiment.classifier import LABELS, load_latest
from apps.sentiment.training import DEFAULT_ARTEFACT, ensure_default_model, file_sha256, train_default
from kgnlp.errors import ModelUnavailableError

MAX_BYTES = 5 * 1024 * 1024


def test_artefact_is_small_safetensors_with_recorded_checksums() -> None:
    from safetensors import safe_open

    files = {p.name: p for p in DEFAULT_ARTEFACT.iterdir()}
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "config.json",
        "metrics.json",
        "README.md",
        "split_rows.json",
    ):
        assert name in files, f"{name} missing from {DEFAULT_ARTEFACT}"
    assert sum(p.stat().st_size for p in files.values()) <= MAX_BYTES
    assert not [n for n in files if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))]  # no pickle
    config = json.loads(files["config.json"].read_text())
    assert config["labels"] == list(LABELS) and config["max_len"] > 0
    assert config["files"]["adapter_model.safetensors"] == file_sha256(files["adapter_model.safetensors"])
    assert len(config["base_model"]["model_safetensors_sha256"]) == 64
    rows = json.loads(files["split_rows.json"].read_text())
    assert config["split"]["seed"] == 13 and len(rows["test"]) == config["split"]["counts"]["test"]
    assert not set(rows["test"]) & set(rows["validation"])
    assert config["calibration"]["temperature"] > 0
    with safe_open(str(files["adapter_model.safetensors"]), "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys) and any("classifier" in k for k in keys)
    metrics = json.loads(files["metrics.json"].read_text())
    assert metrics["measured_by"].endswith("benchmarks/sentiment_default.py --build")
    assert metrics["tweet_test"]["n"] == config["split"]["counts"]["test"]
    readme = files["README.md"].read_text()
    assert "MIT" in readme and "--build" in readme


def test_setup_registers_the_default_model_from_the_artefact(tmp_path: Path, embedder_path: Path) -> None:
    t0 = time.monotonic()
    folder = ensure_default_model(tmp_path, embedder_path, log=lambda s: None)  # tests and demos: no training
    seconds = time.monotonic() - t0
    assert seconds < 60
    man = json.loads((folder / "manifest.json").read_text())
    assert man["kind"] == "minilm-twitter-lora" and man["quantize"] is True
    assert "MIT" in man["data"]["licence"] and man["data"]["counts"]["test"] > 900
    assert "PhraseBank" in man["licence"] and man["recipe"]["method"]["kind"] == "lora"
    build = man["metrics"]["build"]
    assert build["measured_by"].endswith("--build") and build["tweet_test"]["n"] == man["data"]["counts"]["test"]
    # the served (int8) model measured at set-up matches what the build command measured
    assert abs(man["metrics"]["test"]["accuracy"] - build["tweet_test"]["accuracy"]) < 0.005
    clf = load_latest(tmp_path)
    preds = clf.predict(
        [
            "$AAPL shares soar after record quarterly profit",
            "XYZ plunges after profit warning and CEO exit",
        ]
    )
    assert [p.label for p in preds] == ["positive", "negative"], preds
    assert train_default(tmp_path, embedder_path=embedder_path, log=lambda s: None) == folder  # idempotent


def test_corrupted_artefact_is_a_clear_error(tmp_path: Path, embedder_path: Path) -> None:
    broken = tmp_path / "artefact"
    shutil.copytree(DEFAULT_ARTEFACT, broken)
    data = bytearray((broken / "adapter_model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (broken / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelUnavailableError, match=r"sha256.*--train"):
        train_default(tmp_path / "home", embedder_path=embedder_path, artefact=broken, log=lambda s: None)


def test_missing_artefact_falls_back_to_training(tmp_path: Path, embedder_path: Path) -> None:
    lines: list[str] = []
    folder = train_default(
        tmp_path / "home", embedder_path=embedder_path, max_steps=2, artefact=tmp_path / "absent", log=lines.append
    )
    assert any("missing" in line and "training" in line for line in lines), lines
    assert json.loads((folder / "manifest.json").read_text())["kind"] == "minilm-twitter"


def test_a_default_from_an_earlier_shipped_adapter_is_replaced_and_a_trained_model_kept(
    tmp_path: Path, embedder_path: Path
) -> None:
    home = tmp_path / "home"
    first = train_default(home, embedder_path=embedder_path, log=lambda s: None)
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["artefact"]["files"]["adapter_model.safetensors"] = "0" * 64  # as an older checkout built it
    (first / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []
    second = train_default(home, embedder_path=embedder_path, log=lines.append)
    assert second != first and any("earlier shipped adapter" in line for line in lines), lines
    shipped = json.loads((DEFAULT_ARTEFACT / "config.json").read_text())["files"]
    assert load_latest(home).folder == second
    assert json.loads((second / "manifest.json").read_text())["artefact"]["files"] == shipped
    assert train_default(home, embedder_path=embedder_path, log=lambda s: None) == second  # idempotent again
    # a model the user trained (another kind) is never replaced by set-up
    mine = json.loads((second / "manifest.json").read_text())
    mine["kind"] = "single"
    mine["artefact"]["files"]["adapter_model.safetensors"] = "1" * 64
    (second / "manifest.json").write_text(json.dumps(mine))
    assert train_default(home, embedder_path=embedder_path, log=lambda s: None) == second

"""The shipped customer_service adapter: how `kgnlp cs ship-adapter` writes it and `kgnlp cs setup` installs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from apps.customer_service.adapter import SHIPPED, install, ship
from tests.models.test_adapters import _make_adapter


def test_the_repository_ships_a_small_bf16_adapter_with_its_provenance() -> None:
    from safetensors import safe_open

    weights = SHIPPED / "adapter_model.safetensors"
    assert weights.stat().st_size <= 10 * 1024 * 1024
    with safe_open(str(weights), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}  # noqa: SIM118 (not a dict)
    config = json.loads((SHIPPED / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct" and config["peft_type"] == "LORA"
    record = json.loads((SHIPPED / "TRAINING.json").read_text())
    assert set(record["data_sha256"]) == {"train", "validation", "bitext_source"}
    assert (
        record["metrics"]["val"]["loss"] > 0 and "kgnlp models finetune data/retail/cs_sft.yaml" in record["commands"]
    )


def test_install_is_idempotent_and_keeps_an_adapter_the_user_trained(tmp_path: Path) -> None:
    source = tmp_path / "shipped" / "customer_service"
    shutil.copytree(SHIPPED, source)
    home = tmp_path / "home"
    assert install(home, source)["status"] == "installed"
    assert install(home, source)["status"] == "unchanged"
    (source / "adapter_config.json").write_text((source / "adapter_config.json").read_text() + "\n")
    assert install(home, source)["status"] == "installed"  # a new shipped version replaces the old copy
    own = tmp_path / "home2" / "adapters" / "customer_service"
    own.mkdir(parents=True)
    (own / "adapter_config.json").write_text("{}")  # trained by the user: no shipped marker
    assert install(tmp_path / "home2", source)["status"] == "kept"
    assert (own / "adapter_config.json").read_text() == "{}"
    assert install(tmp_path / "home3", tmp_path / "nothing")["status"] == "not_shipped"


def test_ship_writes_bf16_weights_and_the_run_provenance(generator_path: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    run = tmp_path / "run"
    _make_adapter(generator_path, run / "adapter", seed=3)
    train = tmp_path / "train.jsonl"
    train.write_text('{"messages": []}\n')
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "smollm2-135m-instruct", "data": {"train": str(train)}}))
    (run / "metrics.json").write_text(json.dumps({"val": {"loss": 1.5}}))
    out = tmp_path / "shipped"
    record = ship(run, out)
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}  # noqa: SIM118 (not a dict)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m-instruct"
    assert record["metrics"] == {"val": {"loss": 1.5}} and len(record["data_sha256"]["train"]) == 64
    assert json.loads((out / "TRAINING.json").read_text())["run_config"]["model"] == "smollm2-135m-instruct"

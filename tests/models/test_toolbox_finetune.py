"""Fine-tuning toolbox on tiny real models: config errors, LoRA/merge, run directory, resume, SFT masking."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kgnlp.errors import ConfigurationError

LABELS = ["neg", "pos"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_bert(embedder_path: Path, out: Path | None = None, num_labels: int = 2, seed: int = 0):  # type: ignore[no-untyped-def]
    """A 2-layer, 32-wide BERT classifier with the MiniLM tokenizer (saved to ``out`` when given)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(embedder_path))
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
    )  # fmt: skip
    model = BertForSequenceClassification(cfg).eval()
    if out is not None:
        model.save_pretrained(str(out))
        tok.save_pretrained(str(out))
    return model, tok


def tiny_llama(generator_path: Path, seed: int = 0):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(generator_path))
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval(), tok


def toy_csv(path: Path, n: int = 80) -> Path:
    """Sentiment-like toy data: the label is which cue word the text contains."""
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            y = i % 2
            cue = rng.choice(["great", "excellent", "good"] if y else ["bad", "awful", "poor"])
            w.writerow([f"the service was {cue} today {rng.choice(['really', 'quite', ''])}", LABELS[y]])
    return path


def test_config_errors_name_field_and_value(tmp_path: Path) -> None:
    from models.config import build_config

    with pytest.raises(ConfigurationError, match=r"train\.lr.*got 5"):
        build_config(
            {"task": "classify", "model": "m", "output_dir": "o", "data": {"train": "x.csv"}, "train": {"lr": 5}}
        )
    with pytest.raises(ConfigurationError, match=r"install_adapter.*pretrain"):
        build_config(
            {
                "task": "sft",
                "model": "m",
                "output_dir": "o",
                "data": {"train": "x"},
                "install_adapter": "cs",
                "pretrain": {},
            }
        )
    with pytest.raises(ConfigurationError, match=r"method\.kind.*'lorra'"):
        build_config(
            {"task": "classify", "model": "m", "output_dir": "o", "data": {"train": "x"}, "method": {"kind": "lorra"}}
        )


def test_lora_changes_only_adapter_weights(embedder_path: Path) -> None:
    from models.config import MethodConfig
    from models.methods import apply_method

    model, tok = tiny_bert(embedder_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = apply_method(model, MethodConfig(kind="lora", r=4), "classify", total_steps=10)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    enc = tok(["good day", "bad day"], return_tensors="pt", padding=True)
    peft_model.train()
    for _ in range(2):
        loss = peft_model(**enc, labels=torch.tensor([1, 0])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = {k for k, v in peft_model.state_dict().items() if "lora_" in k or "modules_to_save" in k}
    assert any("lora_B" in k for k in changed)
    for name, p in peft_model.named_parameters():
        base = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" not in name and "modules_to_save" not in name and base in before:
            assert torch.equal(p.detach(), before[base]), f"{name} changed"
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: training moved it


def test_merge_equals_unmerged_outputs(embedder_path: Path) -> None:
    from models.config import MethodConfig
    from models.methods import apply_method

    model, tok = tiny_bert(embedder_path)
    peft_model = apply_method(model, MethodConfig(kind="lora", r=4, dropout=0.0), "classify", total_steps=10)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # a non-trivial adapter
    peft_model.eval()
    enc = tok(["a merged adapter", "must not change outputs"], return_tensors="pt", padding=True)
    with torch.no_grad():
        unmerged = peft_model(**enc).logits
        merged = peft_model.merge_and_unload()(**enc).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["full", "lora", "ia3"])
def test_finetune_writes_run_dir_and_learns(tmp_path: Path, embedder_path: Path, kind: str) -> None:
    from models.classify import load_classifier, predict_file
    from models.config import build_config
    from models.finetune import finetune

    tiny_bert(embedder_path, tmp_path / "base")
    data = toy_csv(tmp_path / "toy.csv", 80)
    lr = {"full": 1e-3, "lora": 2e-2, "ia3": 5e-2}[kind]
    cfg = build_config({
        "task": "classify", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data), "val_fraction": 0.2, "test_fraction": 0.2},
        "method": {"kind": kind, "r": 4},
        "train": {"epochs": 3, "batch_size": 8, "lr": lr, "max_len": 16, "warmup_ratio": 0.0,
                  "class_weights": "balanced"},
    })  # fmt: skip
    metrics = finetune(cfg, log=lambda _: None)
    run = tmp_path / "run"
    for name in ("config.yaml", "labels.json", "metrics.json", "epochs.jsonl", "checkpoints"):
        assert (run / name).exists(), name
    assert (run / ("model" if kind == "full" else "adapter")).is_dir()
    assert len(list((run / "checkpoints").glob("step-*"))) == 1
    assert len((run / "epochs.jsonl").read_text().splitlines()) == 3
    hist = [json.loads(x) for x in (run / "epochs.jsonl").read_text().splitlines()]
    assert min(h["loss"] for h in hist[1:]) < hist[0]["loss"]  # it learns (a random tiny base learns slowly)
    if kind == "lora":
        assert metrics["trainable_params"] < metrics["total_params"] / 10
    clf = load_classifier(run)
    if kind != "full":  # loaded merged: no adapter modules left, the adapter's outputs kept
        from peft import PeftModel

        from models.classify import build_sequence_classifier

        assert not any("lora_" in n or "ia3_" in n for n, _ in clf.model.named_parameters())
        base, tok = build_sequence_classifier(tmp_path / "base", json.loads((run / "labels.json").read_text()))
        unmerged = PeftModel.from_pretrained(base, str(run / "adapter")).eval()
        texts = ["the service was great today", "the service was awful"]
        with torch.no_grad():
            expected = unmerged(**tok(texts, return_tensors="pt", padding=True)).logits.numpy()
        np.testing.assert_allclose(clf.logits(texts), expected, atol=1e-4)
    n = predict_file(clf, data, tmp_path / "pred.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert n == 80 and rows[0]["label"] in LABELS and abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-4


def _tiny_run_config(tmp_path: Path, embedder_path: Path, epochs: int) -> dict[str, Any]:
    """A raw config: full fine-tuning of a tiny BERT on 40 toy rows, into ``tmp_path/run``."""
    tiny_bert(embedder_path, tmp_path / "base")
    data = toy_csv(tmp_path / "toy.csv", 40)
    return {
        "task": "classify", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data)}, "method": {"kind": "full"},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 1e-3, "max_len": 16},
    }  # fmt: skip


def test_resume_continues_from_checkpoint(tmp_path: Path, embedder_path: Path) -> None:
    from models.config import build_config
    from models.finetune import finetune

    raw = _tiny_run_config(tmp_path, embedder_path, epochs=2)
    finetune(build_config(raw), log=lambda _: None)
    raw["train"] = {**raw["train"], "epochs": 3}
    lines: list[str] = []
    m = finetune(build_config(raw), log=lines.append)
    assert any("resumed" in x and "epoch 2" in x for x in lines), lines
    assert len((tmp_path / "run" / "epochs.jsonl").read_text().splitlines()) == 3
    assert m["steps"] == 12


def test_resume_refuses_checkpoints_of_other_data_and_fresh_starts_over(tmp_path: Path, embedder_path: Path) -> None:
    from kgnlp.errors import ConfigurationError
    from models.config import build_config
    from models.finetune import finetune

    raw = _tiny_run_config(tmp_path, embedder_path, epochs=1)
    finetune(build_config(raw), log=lambda _: None)
    toy_csv(Path(raw["data"]["train"]), 48)  # the data changed under the run directory
    with pytest.raises(ConfigurationError, match=r"another config or other data.*--fresh"):
        finetune(build_config(raw), log=lambda _: None)
    raw["train"] = {**raw["train"], "lr": 5e-4}  # so did the config
    with pytest.raises(ConfigurationError, match="--fresh"):
        finetune(build_config(raw), log=lambda _: None)
    assert "lr: 0.001" in (tmp_path / "run" / "config.yaml").read_text()  # still the checkpoints' config
    lines: list[str] = []
    m = finetune(build_config(raw), resume=False, log=lines.append)
    assert not any("resumed" in x for x in lines) and m["steps"] == 5  # 48 rows less 20 % held out, batch 8
    assert [p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")] == ["step-5"]


def test_sft_loss_only_on_assistant_tokens(generator_path: Path) -> None:
    from transformers import AutoTokenizer

    from models.data import tokenize_chat

    tok = AutoTokenizer.from_pretrained(str(generator_path))
    msgs = [{"role": "user", "content": "What is a bond?"}, {"role": "assistant", "content": "A loan you can trade."}]
    ids, labels = tokenize_chat(tok, msgs, 256)
    learned = tok.decode([t for t, y in zip(ids, labels, strict=True) if y != -100])
    assert "A loan you can trade." in learned and "bond" not in learned


CHATS = [
    {"messages": [{"role": "user", "content": f"say {w}"}, {"role": "assistant", "content": f"{w} {w}"}]}
    for w in ["alpha", "beta", "gamma", "delta"] * 3
]


def write_chats(cfg: Any) -> None:
    """A ``data.prepare`` hook (derived data, built on first use)."""
    Path(cfg.data.train).write_text("\n".join(json.dumps(c) for c in CHATS))


def test_sft_run_builds_its_data_trains_and_installs_the_adapter(
    tmp_path: Path, generator_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.config import build_config
    from models.finetune import finetune

    monkeypatch.setenv("KGNLP_HOME", str(tmp_path / "home"))
    model, tok = tiny_llama(generator_path)
    model.save_pretrained(str(tmp_path / "base"))
    tok.save_pretrained(str(tmp_path / "base"))
    cfg = build_config({
        "task": "sft", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "install_adapter": "greeter",
        "data": {"train": str(tmp_path / "chat.jsonl"), "val_fraction": 0.2,
                 "prepare": "tests.models.test_toolbox_finetune:write_chats"},
        "method": {"kind": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"]},
        "train": {"epochs": 3, "batch_size": 4, "lr": 1e-2, "max_len": 64, "metric": "loss"},
    })  # fmt: skip
    (tmp_path / "chat.jsonl").write_text("stale data from an earlier recipe")
    m = finetune(cfg, log=lambda _: None)
    assert (tmp_path / "chat.jsonl").read_text().startswith('{"messages"')  # (re)built by the hook
    hist = [json.loads(x) for x in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    assert hist[-1]["loss"] < hist[0]["loss"] and m["method"] == "lora"
    assert json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    installed = tmp_path / "home" / "adapters" / "greeter"
    assert (installed / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "run" / "adapter" / "adapter_model.safetensors"
    ).read_bytes()


def test_prepare_hook_errors_are_clear(tmp_path: Path) -> None:
    from kgnlp.errors import ConfigurationError
    from models.config import build_config
    from models.finetune import _prepare_data

    def cfg(hook: str) -> Any:
        return build_config({"task": "sft", "model": "m", "output_dir": str(tmp_path / "run"),
                             "data": {"train": str(tmp_path / "nothing.jsonl"), "prepare": hook}})  # fmt: skip

    with pytest.raises(ConfigurationError, match=r"data\.prepare: cannot import 'no\.such:hook'"):
        _prepare_data(cfg("no.such:hook"))
    with pytest.raises(ConfigurationError, match=r"did not write data\.train"):
        _prepare_data(cfg("builtins:print"))
    with pytest.raises(ConfigurationError, match=r"data\.prepare"):
        cfg("not a hook")
    with pytest.raises(ConfigurationError, match="install_adapter"):
        build_config({"task": "sft", "model": "m", "output_dir": "r", "data": {"train": "t"},
                      "method": {"kind": "full"}, "install_adapter": "x"})  # fmt: skip


def test_masked_lm_loss_equals_the_models_own_loss(generator_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from models.finetune import masked_lm_loss

    model, _ = tiny_llama(generator_path)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids = torch.randint(5, 200, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt
    labels[2, 10:] = -100  # padding
    attention = torch.ones_like(ids)
    attention[2, 10:] = 0
    batch = {"input_ids": ids, "attention_mask": attention, "labels": labels}
    ours = masked_lm_loss(model, batch)
    assert torch.allclose(ours, model(**batch).loss, atol=1e-5)
    ours.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_domain_pretraining_then_lora_starts_from_the_adapted_backbone(tmp_path: Path, embedder_path: Path) -> None:
    import yaml

    from models.classify import load_classifier
    from models.config import build_config
    from models.finetune import finetune

    raw = _tiny_run_config(tmp_path, embedder_path, epochs=1)
    extra = tmp_path / "unlabelled.txt"
    extra.write_text("the refund took a week\n\nmy card was declined\n")
    raw["method"] = {"kind": "lora", "r": 4}
    raw["pretrain"] = {"texts": str(extra), "epochs": 2, "batch_size": 8, "max_len": 16, "head_warmup_steps": 1}
    lines: list[str] = []
    metrics = finetune(build_config(raw), log=lines.append)
    run = tmp_path / "run"
    record = json.loads((run / "pretrain.json").read_text())
    assert record["objective"] == "mlm" and record["texts"] == metrics["train_examples"] + 2  # train split only
    assert record["steps"] == 2 * math.ceil(record["texts"] / 8)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["resolved_model"] == str((run / "pretrained").resolve())  # LoRA applies to the adapted model
    assert load_classifier(run).predict_proba(["the service was great today"]).shape == (1, 2)
    missing = {**raw, "output_dir": str(tmp_path / "run2"), "pretrain": {**raw["pretrain"], "texts": "nope.txt"}}
    with pytest.raises(ConfigurationError, match=r"pretrain\.texts: no such file"):
        finetune(build_config(missing), log=lambda _: None)
    raw["train"] = {**raw["train"], "epochs": 2}  # a resume keeps the adapted backbone
    finetune(build_config(raw), log=lines.append)
    assert any("reusing" in x for x in lines) and json.loads((run / "pretrain.json").read_text()) == record


def test_new_head_loads_quietly_and_other_missing_weights_are_reported(
    embedder_path: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A backbone without a head gets one without transformers' "MISSING ... Consider training" table
    (``make serve`` printed it); a weight missing from the backbone itself is still reported."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.classify import build_sequence_classifier

    tok = AutoTokenizer.from_pretrained(str(embedder_path))
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    for name in ("whole", "holed"):
        BertModel(cfg).save_pretrained(str(tmp_path / name))
        tok.save_pretrained(str(tmp_path / name))
    weights = tmp_path / "holed" / "model.safetensors"
    tensors = load_file(str(weights))
    hole = next(k for k in tensors if "layer.1.output.dense.weight" in k)
    del tensors[hole]
    save_file(tensors, str(weights), metadata={"format": "pt"})

    with caplog.at_level("WARNING", logger="kgnlp.models"):
        model, _ = build_sequence_classifier(tmp_path / "whole", LABELS)
        assert model.classifier.out_features == 2
        assert "LOAD REPORT" not in capfd.readouterr().err and not caplog.records
        build_sequence_classifier(tmp_path / "holed", LABELS)
    assert [r.name for r in caplog.records] == ["kgnlp.models"] and "layer.1.output.dense.weight" in caplog.text

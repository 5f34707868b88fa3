"""Every training switch has an observable effect: a switch that is silently ignored fails here.

Tiny real models (a 2-layer BERT, a 2-layer Llama) through the real ``finetune``; spies (hooks,
wrappers that call through) only observe what the training loop does.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.models.test_toolbox_finetune import LABELS, tiny_bert, tiny_llama, toy_csv


def _quiet(_: str) -> None:
    pass


def _classify(tmp_path: Path, embedder_path: Path, name: str, data: Path | None = None, **train: Any) -> Any:
    """A validated classify config: a tiny BERT (``tmp_path/base``, made once) on 40 toy rows."""
    from models.config import build_config

    method = train.pop("method", {"kind": "full"})
    pretrain = train.pop("pretrain", None)
    if not (tmp_path / "base").exists():
        tiny_bert(embedder_path, tmp_path / "base")
    if data is None:
        data = tmp_path / "toy.csv"
        if not data.exists():
            toy_csv(data, 40)
    raw: dict[str, Any] = {
        "task": "classify", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / name),
        "data": {"train": str(data)}, "method": method,
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "max_len": 16, **train},
    }  # fmt: skip
    if pretrain is not None:
        raw["pretrain"] = pretrain
    return build_config(raw)


@pytest.fixture
def on_model(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[Any], None]]:
    """Callbacks run on the model ``apply_method`` returns (the one ``finetune`` trains)."""
    import models.methods

    callbacks: list[Callable[[Any], None]] = []
    real = models.methods.apply_method

    def spy(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs)
        for cb in callbacks:
            cb(model)
        return model

    monkeypatch.setattr(models.methods, "apply_method", spy)
    return callbacks


@pytest.fixture
def on_step(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[Any], None]]:
    """Callbacks run with the real optimizer just before each of its (real, synced) steps."""
    import models.finetune

    callbacks: list[Callable[[Any], None]] = []
    real = models.finetune._optimizer

    def spy(model: Any, cfg: Any) -> Any:
        opt = real(model, cfg)

        def pre(o: Any, *_: Any) -> None:
            for cb in callbacks:
                cb(o)

        opt.register_step_pre_hook(pre)
        return opt

    monkeypatch.setattr(models.finetune, "_optimizer", spy)
    return callbacks


@pytest.fixture
def fresh_precision() -> Any:
    """accelerate keeps one process-wide ``AcceleratorState``: a run with another ``mixed_precision``
    than an earlier run in the same process refuses to start, so these tests reset it (and leave
    it reset for the tests after them)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield AcceleratorState._reset_state
    AcceleratorState._reset_state()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# --- methods -------------------------------------------------------------------------------------


def test_adalora_trains_an_adalora_adapter_and_reallocates_its_ranks(tmp_path: Path, embedder_path: Path) -> None:
    from models.finetune import finetune

    cfg = _classify(tmp_path, embedder_path, "run", method={"kind": "adalora", "r": 4}, epochs=3, max_steps=10)
    finetune(cfg, log=_quiet)
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "ADALORA" and adapter["init_r"] == 6 and adapter["target_r"] == 4
    # the budget is only enforced by update_and_allocate (called by the loop): 6 → 4 ranks on average
    pattern = adapter["rank_pattern"]
    assert pattern, "update_and_allocate never masked ranks"
    kept = sum(sum(bool(x) for x in mask) for mask in pattern.values())
    assert all(len(mask) == 6 for mask in pattern.values())
    assert kept == 4 * len(pattern)


def test_prompt_tuning_prepends_trained_virtual_tokens_and_freezes_the_backbone(
    tmp_path: Path, embedder_path: Path, on_model: list[Callable[[Any], None]]
) -> None:
    from models.finetune import finetune

    seen: list[tuple[int, int]] = []  # (input tokens, positions the encoder saw) per training forward
    models: list[Any] = []
    initial: dict[str, torch.Tensor] = {}

    def observe(model: Any) -> None:
        models.append(model)
        initial["prompt"] = model.prompt_encoder["default"].embedding.weight.detach().clone()
        initial.update({k: v.detach().clone() for k, v in model.base_model.bert.state_dict().items()})
        ids: list[int] = []
        model.register_forward_pre_hook(
            lambda m, a, kw: ids.append(kw["input_ids"].shape[1]) if m.training else None, with_kwargs=True
        )
        model.base_model.bert.encoder.register_forward_pre_hook(
            lambda m, a, kw: (
                seen.append((ids[-1], (a[0] if a else kw["hidden_states"]).shape[1])) if m.training else None
            ),
            with_kwargs=True,
        )

    on_model.append(observe)
    cfg = _classify(tmp_path, embedder_path, "run", method={"kind": "prompt", "num_virtual_tokens": 4},
                    lr=3e-2, max_steps=4, group_by_length=False)  # fmt: skip
    finetune(cfg, log=_quiet)
    adapter = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "PROMPT_TUNING" and adapter["num_virtual_tokens"] == 4
    assert len(seen) == 4 and all(positions == n + 4 for n, positions in seen), seen
    trained = _weights(tmp_path / "run" / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert trained.shape == initial["prompt"].shape and not torch.equal(trained, initial["prompt"])
    backbone = models[0].base_model.bert.state_dict()
    assert all(torch.equal(backbone[k], initial[k]) for k in backbone), "prompt tuning moved backbone weights"


# --- pre-training objective ----------------------------------------------------------------------


def _clm_loss(model: Any, tok: Any, texts: list[str]) -> float:
    enc = tok(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.no_grad():
        return float(model(**enc, labels=labels).loss)


def test_clm_domain_pretraining_teaches_a_decoder_its_texts(tmp_path: Path, generator_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from models.config import build_config
    from models.finetune import finetune

    model, tok = tiny_llama(generator_path)
    model.save_pretrained(str(tmp_path / "base"))
    tok.save_pretrained(str(tmp_path / "base"))
    chats = [
        {"messages": [{"role": "user", "content": f"say {w}"}, {"role": "assistant", "content": f"{w} {w} {w}"}]}
        for w in ["alpha", "beta", "gamma", "delta"] * 3
    ]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(c) for c in chats))
    cfg = build_config({
        "task": "sft", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(tmp_path / "chat.jsonl"), "val_fraction": 0.0},
        "method": {"kind": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"]},
        "pretrain": {"objective": "clm", "epochs": 10, "lr": 2e-2, "batch_size": 24, "max_len": 16,
                     "head_warmup_steps": 0},
        "train": {"max_steps": 1, "batch_size": 4, "max_len": 64, "metric": "loss"},
    })  # fmt: skip
    finetune(cfg, log=_quiet)
    record = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    assert record["objective"] == "clm" and record["texts"] == 24 and record["steps"] == 10
    adapted = AutoModelForCausalLM.from_pretrained(str(tmp_path / "run" / "pretrained"))
    texts = ["alpha alpha alpha", "say gamma", "delta delta delta"]
    assert _clm_loss(adapted, tok, texts) < 0.5 * _clm_loss(model, tok, texts)


def test_clm_objective_is_honoured_even_where_auto_would_pick_mlm(tmp_path: Path, embedder_path: Path) -> None:
    from models.finetune import finetune

    cfg = _classify(tmp_path, embedder_path, "run", max_steps=1,
                    pretrain={"objective": "clm", "epochs": 1, "batch_size": 16, "max_len": 16})  # fmt: skip
    finetune(cfg, log=_quiet)
    assert json.loads((tmp_path / "run" / "pretrain.json").read_text())["objective"] == "clm"
    config = json.loads((tmp_path / "run" / "pretrained" / "config.json").read_text())
    assert config["architectures"] == ["BertLMHeadModel"]  # a causal-LM head, not BertForMaskedLM


# --- optimisation --------------------------------------------------------------------------------


def test_grad_accum_two_batches_of_two_equal_one_batch_of_four(
    tmp_path: Path, embedder_path: Path, on_step: list[Callable[[Any], None]]
) -> None:
    from models.finetune import finetune

    grads: dict[str, list[list[torch.Tensor]]] = {}
    params: dict[str, dict[str, torch.Tensor]] = {}
    for name, batch, accum in (("b4", 4, 1), ("b2x2", 2, 2), ("b2", 2, 1)):
        got: list[list[torch.Tensor]] = []
        on_step[:] = [lambda o, got=got: got.append([p.grad.clone() for g in o.param_groups for p in g["params"]])]
        cfg = _classify(tmp_path, embedder_path, name, batch_size=batch, grad_accum=accum, max_steps=1,
                        group_by_length=False, dropout=0.0, warmup_ratio=0.0)  # fmt: skip
        assert finetune(cfg, log=_quiet)["steps"] == 1
        grads[name] = got
        params[name] = _weights(tmp_path / name / "model" / "model.safetensors")
    assert len(grads["b4"]) == len(grads["b2x2"]) == 1  # one optimizer step, after both micro-batches
    for a, b in zip(grads["b4"][0], grads["b2x2"][0], strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)  # (other padding: float rounding)
    # Adam's first step moves each weight by about lr (1e-3) whatever its gradient's size, so a
    # gradient of ~1e-8 turns rounding into up to ~4e-5 here: a tenth of a step per weight, far less on average
    drift = [(params["b2x2"][k] - v).abs() for k, v in params["b4"].items()]
    assert max(float(d.max()) for d in drift) < 1e-4
    assert float(torch.cat([d.flatten() for d in drift]).mean()) < 1e-7
    # the check can tell: the gradient of one batch of two is another, and so is its step
    assert any(
        not torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads["b4"][0], grads["b2"][0], strict=True)
    )
    assert max(float((params["b2"][k] - v).abs().max()) for k, v in params["b4"].items()) > 1e-3
    base = _weights(tmp_path / "base" / "model.safetensors")
    assert any(not torch.equal(base[k], v) for k, v in params["b4"].items() if k in base)


def test_warmup_starts_below_the_peak_lr_and_rises_to_it(
    tmp_path: Path, embedder_path: Path, on_step: list[Callable[[Any], None]]
) -> None:
    from models.finetune import finetune

    lrs: list[float] = []
    on_step.append(lambda o: lrs.append(o.param_groups[0]["lr"]))
    finetune(_classify(tmp_path, embedder_path, "warm", max_steps=8, warmup_ratio=0.5, lr=1e-3), log=_quiet)
    expected = [1e-3 * x for x in (0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25)]  # 4 warm-up steps, linear decay
    assert lrs == pytest.approx(expected)
    lrs.clear()
    finetune(_classify(tmp_path, embedder_path, "cold", max_steps=8, warmup_ratio=0.0, lr=1e-3), log=_quiet)
    assert lrs[0] == pytest.approx(1e-3)  # without warm-up the first step is at the peak


def test_early_stopping_ends_the_run_when_validation_stops_improving(tmp_path: Path, embedder_path: Path) -> None:
    from models.finetune import finetune

    lines: list[str] = []
    # a learning rate too small to change a single prediction: validation accuracy never improves
    cfg = _classify(tmp_path, embedder_path, "run", epochs=8, lr=1e-9, early_stopping_patience=2)
    metrics = finetune(cfg, log=lines.append)
    evals = (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()
    assert len(evals) == 3 and metrics["steps"] == 3 * 4  # best, then 2 evaluations without improvement
    assert any("early stop" in x for x in lines)


def test_bf16_mixed_precision_runs_the_training_forward_under_autocast(
    tmp_path: Path, embedder_path: Path, on_model: list[Callable[[Any], None]], fresh_precision: Any
) -> None:
    from models.finetune import finetune

    def dtypes_seen(precision: str) -> set[torch.dtype]:
        fresh_precision()
        seen: set[torch.dtype] = set()

        def observe(model: Any) -> None:
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.register_forward_hook(lambda mod, a, out: seen.add(out.dtype) if mod.training else None)

        on_model[:] = [observe]
        finetune(_classify(tmp_path, embedder_path, precision, max_steps=2, mixed_precision=precision), log=_quiet)
        return seen

    assert dtypes_seen("no") == {torch.float32}
    assert torch.bfloat16 in dtypes_seen("bf16")


def test_bf16_mixed_precision_reaches_the_sft_loss(
    tmp_path: Path, generator_path: Path, on_model: list[Callable[[Any], None]], fresh_precision: Any
) -> None:
    from models.config import build_config
    from models.finetune import finetune

    model, tok = tiny_llama(generator_path)
    model.save_pretrained(str(tmp_path / "base"))
    tok.save_pretrained(str(tmp_path / "base"))
    chats = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}] * 4
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(c) for c in chats))
    seen: set[torch.dtype] = set()

    def observe(model: Any) -> None:
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.register_forward_hook(lambda mod, a, out: seen.add(out.dtype) if torch.is_grad_enabled() else None)

    on_model.append(observe)
    cfg = build_config({
        "task": "sft", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(tmp_path / "chat.jsonl"), "val_fraction": 0.0},
        "method": {"kind": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"]},
        "train": {"max_steps": 1, "batch_size": 4, "max_len": 32, "metric": "loss", "mixed_precision": "bf16"},
    })  # fmt: skip
    finetune(cfg, log=_quiet)
    assert torch.bfloat16 in seen


# --- data and robustness -------------------------------------------------------------------------

BANKING = [
    "my card was charged a fee",
    "why is my money transfer wrong",
    "help me cancel the refund",
    "i want to buy a new card",
    "how do i get my money back",
    "the account fee looks wrong",
    "please help with my transfer",
    "cancel my card today",
]


def banking_csv(path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(40):
            w.writerow([BANKING[i % len(BANKING)], LABELS[i % 2]])
    return path


def _train_texts(tmp_path: Path, embedder_path: Path, on_model: list[Any], name: str, **train: Any) -> list[str]:
    """The texts the model was trained on, decoded from the training forwards' ``input_ids``."""
    from transformers import AutoTokenizer

    from models.finetune import finetune

    tok = AutoTokenizer.from_pretrained(str(embedder_path))
    seen: list[str] = []

    def observe(model: Any) -> None:
        def pre(m: Any, args: Any, kwargs: Any) -> None:
            if m.training:
                seen.extend(tok.batch_decode(kwargs["input_ids"], skip_special_tokens=True))

        model.register_forward_pre_hook(pre, with_kwargs=True)

    on_model[:] = [observe]
    data = banking_csv(tmp_path / "banking.csv")
    finetune(_classify(tmp_path, embedder_path, name, data=data, max_steps=4, **train), log=_quiet)
    assert len(seen) == 32
    return seen


@pytest.mark.parametrize("kind", ["noise", "synonym"])
def test_augmentation_alters_the_training_texts_deterministically(
    tmp_path: Path, embedder_path: Path, on_model: list[Any], kind: str
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(embedder_path))
    originals = {tok.decode(tok(x)["input_ids"], skip_special_tokens=True) for x in BANKING}
    plain = _train_texts(tmp_path, embedder_path, on_model, "plain")
    assert set(plain) <= originals  # the observation itself is exact
    first = _train_texts(tmp_path, embedder_path, on_model, "a", augment=kind, augment_prob=0.3, seed=7)
    again = _train_texts(tmp_path, embedder_path, on_model, "b", augment=kind, augment_prob=0.3, seed=7)
    altered = [x for x in first if x not in originals]
    assert len(altered) >= 8, first
    assert first == again  # same seed, same augmented texts in the same order
    if kind == "synonym":
        from models.data import _SYNONYMS

        replacements = {w for options in _SYNONYMS.values() for s in options for w in s.split()}
        vocab = {w for x in originals for w in x.split()}
        new_words = {w for x in altered for w in x.split()} - vocab
        assert new_words and new_words <= replacements, new_words  # words from the synonym table
    else:  # words dropped or swapped: never a word that was not there
        vocab = {w for x in originals for w in x.split()}
        assert all(set(x.split()) <= vocab for x in first)


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_fgm_perturbs_the_embeddings_for_the_adversarial_pass_and_restores_them_exactly(
    tmp_path: Path, embedder_path: Path, on_model: list[Any], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import models.finetune
    from models.finetune import FGM, finetune

    eps = 0.5
    shifts: list[float] = []  # per training forward: ||embedding weights - weights before the attack||
    restored: list[bool] = []
    reference: dict[str, torch.Tensor] = {}
    embeddings: list[Any] = []

    class SpyFGM(FGM):
        def attack(self) -> bool:
            reference["before"] = self.weight.detach().clone()
            return super().attack()

        def restore(self) -> None:
            super().restore()
            restored.append(torch.equal(self.weight.detach(), reference["before"]))  # bit-exact

    def observe(model: Any) -> None:
        emb = model.get_input_embeddings()
        embeddings.append(emb)
        reference["initial"] = emb.weight.detach().clone()

        def pre(m: Any, args: Any) -> None:
            if m.training:
                before = reference.get("before", reference["initial"])
                shifts.append(float(torch.linalg.vector_norm(m.weight.detach() - before)))

        emb.register_forward_pre_hook(pre)

    monkeypatch.setattr(models.finetune, "FGM", SpyFGM)
    on_model.append(observe)
    method = {"kind": kind, "r": 4}
    cfg = _classify(tmp_path, embedder_path, "run", method=method, max_steps=3, fgm_epsilon=eps,
                    lr=1e-2 if kind == "lora" else 1e-3)  # fmt: skip
    finetune(cfg, log=_quiet)
    assert restored == [True, True, True]
    # each step: a clean pass on the weights as they are, an adversarial pass shifted by exactly epsilon
    assert len(shifts) == 6
    for step in range(3):
        clean, adversarial = shifts[2 * step], shifts[2 * step + 1]
        assert adversarial == pytest.approx(eps, rel=1e-4)
        if step == 0 or kind == "lora":  # (full fine-tuning moves the embeddings between steps)
            assert clean == 0.0
    if kind == "lora":  # the backbone's embeddings are frozen under LoRA: FGM must not train them
        assert torch.equal(embeddings[0].weight.detach(), reference["initial"])


# --- loading -------------------------------------------------------------------------------------


def test_load_model_parallel_places_the_model_by_device_map_and_max_memory(
    tmp_path: Path, generator_path: Path, embedder_path: Path
) -> None:
    from transformers import BertForSequenceClassification

    from models.distributed import load_model_parallel

    model, _ = tiny_llama(generator_path)
    model.save_pretrained(str(tmp_path / "llama"))
    ids = torch.randint(5, 200, (2, 7))
    with torch.no_grad():
        expected = model(ids).logits
        # a memory cap below the model's size: the loader's device map offloads it, and it still runs
        capped = load_model_parallel(tmp_path / "llama", max_memory={"cpu": "1MB"})
        assert set(capped.hf_device_map.values()) == {"disk"}
        assert {p.device.type for p in capped.parameters()} == {"meta"}
        torch.testing.assert_close(capped(ids).logits, expected)
        whole = load_model_parallel(tmp_path / "llama")
        assert {p.device.type for p in whole.parameters()} == {"cuda" if torch.cuda.is_available() else "cpu"}
        torch.testing.assert_close(whole(ids.to(whole.device)).logits.cpu(), expected)
    clf, _ = tiny_bert(embedder_path, tmp_path / "bert")
    loaded = load_model_parallel(tmp_path / "bert", kind="classify")
    assert isinstance(loaded, BertForSequenceClassification)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in clf.parameters())


def test_adalora_orthogonality_regulariser_matches_peft_and_reaches_the_training_loss(
    tmp_path: Path, embedder_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """finetune computes its loss from the logits, so peft's forward never adds AdaLoRA's
    orthogonality term; ``adalora_orth_reg`` is that term (equal to what peft adds when it computes
    the loss) and finetune adds it to every AdaLoRA training loss, and only there."""
    import models.methods
    from models.config import MethodConfig
    from models.finetune import finetune
    from models.methods import adalora_orth_reg, apply_method

    model, tok = tiny_bert(embedder_path)
    peft_model = apply_method(model, MethodConfig(kind="adalora", r=4), "classify", total_steps=20).eval()
    enc = tok(["card arrived late", "great service"], return_tensors="pt", padding=True)
    y = torch.tensor([0, 1])
    with torch.no_grad():
        with_reg = peft_model(**enc, labels=y).loss  # peft adds the term when the model computes the loss
        without = peft_model.base_model.model(**enc, labels=y).loss
        reg = adalora_orth_reg(peft_model)
    assert float(reg) > 0
    torch.testing.assert_close(with_reg - without, reg, atol=1e-6, rtol=1e-5)

    calls: list[float] = []
    real = models.methods.adalora_orth_reg
    monkeypatch.setattr(models.methods, "adalora_orth_reg", lambda m: calls.append(1.0) or real(m))
    finetune(_classify(tmp_path, embedder_path, "ada", method={"kind": "adalora", "r": 4}, max_steps=3), log=_quiet)
    assert len(calls) >= 3  # one per training batch
    calls.clear()
    finetune(_classify(tmp_path, embedder_path, "lora", method={"kind": "lora", "r": 4}, max_steps=3), log=_quiet)
    assert calls == []


def test_runs_with_different_mixed_precision_in_one_process(tmp_path: Path, embedder_path: Path) -> None:
    """A library user trains twice in one process: bf16, then fp32 (accelerate's process-wide state refused it)."""
    from models.finetune import finetune

    for name, precision in (("bf16", "bf16"), ("fp32", "no"), ("bf16-again", "bf16")):
        cfg = _classify(tmp_path, embedder_path, name, mixed_precision=precision, max_steps=2)
        finetune(cfg, log=_quiet)
        assert (tmp_path / name / "metrics.json").is_file()

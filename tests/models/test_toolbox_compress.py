"""Pruning, quantization, distillation and pre-training on tiny real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.models.test_toolbox_finetune import tiny_bert, tiny_llama


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_structured_pruning_removes_real_parameters(tmp_path: Path, embedder_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from models.prune import prune_attention_heads, prune_ffn

    model, tok = tiny_bert(embedder_path)
    enc = tok(["prune me", "a second text"], return_tensors="pt", padding=True)
    before = _params(model)
    model.save_pretrained(str(tmp_path / "orig"))
    assert prune_ffn(model, 0.5) == 32
    after_ffn = _params(model)
    assert after_ffn < before
    with torch.no_grad():
        assert model(**enc).logits.shape == (2, 2)
    model.save_pretrained(str(tmp_path / "m"))  # FFN pruning is expressible in the config: it reloads
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "m")).eval()
    torch.testing.assert_close(reloaded(**enc).logits, model(**enc).logits)
    size = (tmp_path / "m" / "model.safetensors").stat().st_size
    assert size < (tmp_path / "orig" / "model.safetensors").stat().st_size - 4 * 2 * 2 * 32 * 32  # 2 layers x 2 mats
    assert prune_attention_heads(model, 0.5) == 2
    assert _params(model) < after_ffn
    with torch.no_grad():
        assert torch.isfinite(model(**enc).logits).all()


def test_llama_ffn_pruning(generator_path: Path) -> None:
    from models.prune import prune_ffn

    model, tok = tiny_llama(generator_path)
    before = _params(model)
    prune_ffn(model, 0.25)
    assert _params(model) < before and model.config.intermediate_size == 16
    with torch.no_grad():
        model(**tok(["hello"], return_tensors="pt"))


def test_magnitude_pruning_zeroes_weights(embedder_path: Path) -> None:
    from models.prune import magnitude_prune, nonzero_parameters

    model, _ = tiny_bert(embedder_path)
    nz = nonzero_parameters(model)
    sparsity = magnitude_prune(model, 0.5)
    assert abs(sparsity - 0.5) < 0.01
    assert nonzero_parameters(model) < nz
    assert not any("weight_orig" in n for n, _ in model.named_parameters())  # masks made permanent


def test_int8_quantization_shrinks_and_keeps_predictions(embedder_path: Path) -> None:
    from models.loading import quantize_int8_dynamic
    from models.quantize import serialized_bytes

    model, tok = tiny_bert(embedder_path)
    enc = tok(["quantize this sentence please", "and this one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model(**enc).logits
    fp32 = serialized_bytes(model)
    q, names = quantize_int8_dynamic(model, keep_float=("classifier",))
    assert names and serialized_bytes(q) < fp32
    with torch.no_grad():
        torch.testing.assert_close(q(**enc).logits, ref, atol=0.05, rtol=0.1)


def test_distillation_lowers_kl_to_teacher(embedder_path: Path) -> None:
    from models.distill import distillation_loss, kl_to_teacher

    _, tok = tiny_bert(embedder_path, seed=1)
    student, _ = tiny_bert(embedder_path, seed=2)
    texts = [f"example number {i} about {w}" for i, w in enumerate(["cards", "fees", "loans", "rates"] * 4)]
    enc = tok(texts, return_tensors="pt", padding=True)
    t_logits = torch.randn(len(texts), 2, generator=torch.Generator().manual_seed(0)) * 3  # a confident teacher
    with torch.no_grad():
        before = kl_to_teacher(student(**enc).logits.numpy(), t_logits.numpy())
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    student.train()
    for _ in range(30):
        loss = distillation_loss(student(**enc).logits, t_logits, t_logits.argmax(1), temperature=2.0, alpha=0.8)
        opt.zero_grad()
        loss.backward()
        opt.step()
    student.eval()
    with torch.no_grad():
        after = kl_to_teacher(student(**enc).logits.numpy(), t_logits.numpy())
    assert after < 0.5 * before, (before, after)


def test_causal_lm_distillation_lowers_loss(generator_path: Path) -> None:
    from models.distill import distill_causal_lm

    teacher, tok = tiny_llama(generator_path, seed=1)
    student, _ = tiny_llama(generator_path, seed=2)
    prompts = ["The bank raised rates.", "Shares fell sharply today.", "Card payments are delayed."]
    losses = distill_causal_lm(teacher, student, tok, prompts, steps=25, lr=3e-3, batch_size=3)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_mlm_pretraining_lowers_loss_and_saves(tmp_path: Path, embedder_path: Path) -> None:
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    from models.pretrain import continue_pretraining

    _, tok = tiny_bert(embedder_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    BertForMaskedLM(cfg).save_pretrained(str(tmp_path / "enc"))
    tok.save_pretrained(str(tmp_path / "enc"))
    texts = ["operating profit rose to eur 13.1 mn", "net sales decreased by 5 percent", "the bank cut its rate"] * 8
    out = continue_pretraining(tmp_path / "enc", texts, tmp_path / "dapt", epochs=12, lr=3e-3, batch_size=8)
    assert out["last_loss"] < out["first_loss"]
    AutoModelForMaskedLM.from_pretrained(str(tmp_path / "dapt"))


def _bert_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.bert.state_dict().items()}


@pytest.mark.parametrize("warmup", [100, 2])
def test_mlm_head_warmup_keeps_the_encoder_until_the_new_head_has_trained(
    tmp_path: Path, embedder_path: Path, warmup: int
) -> None:
    from transformers import AutoModelForMaskedLM

    from models.pretrain import continue_pretraining

    tiny_bert(embedder_path, tmp_path / "base")  # a classifier checkpoint: no MLM head, like sentence-transformers
    texts = ["my card payment was declined", "the refund has not arrived", "how do i top up by transfer"] * 8
    out = continue_pretraining(
        tmp_path / "base", texts, tmp_path / "dapt", epochs=4, lr=1e-2, batch_size=8, head_warmup_steps=warmup
    )
    assert out["steps"] == 12 and out["new_weights"] > 0
    before = _bert_params(AutoModelForMaskedLM.from_pretrained(str(tmp_path / "base")))
    adapted, info = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "dapt"), output_loading_info=True)
    assert not info["missing_keys"]  # the trained head was saved
    after = _bert_params(adapted)
    same = all(torch.equal(before[k], after[k]) for k in before if not k.startswith("pooler"))
    assert same is (warmup >= 12)  # within the warm-up only the head moves; after it the encoder does too

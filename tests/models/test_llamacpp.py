"""The llama.cpp engine on the real SmolLM2 GGUF: decoding, streaming, and LoRA adapters merged
into GGUF (checked against the HF weights and against peft's own forward pass)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.generation import ChatMessage, GenerationParams
from tests.models.test_adapters import _make_adapter

if os.environ.get("KGNLP_REQUIRE_LLAMACPP") != "1":  # CI sets it: there a missing build is a failure
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make setup builds it)")

Q = [ChatMessage("user", "What is the capital of France? Answer in one word.")]


@pytest.fixture(scope="module")
def gguf_file(model_home: Path) -> Path:
    from models.provision import ModelCache

    return ModelCache(model_home).gguf("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def lora(generator_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lora")
    return _make_adapter(generator_path, root / "alpha", seed=1)


@pytest.fixture(scope="module")
def gen(gguf_file: Path, generator_path: Path, lora: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from models.llamacpp import LlamaCppGenerator

    return LlamaCppGenerator.from_files(
        gguf_file, generator_path, "smollm2", adapter_dir=lora.parent, cache_dir=tmp_path_factory.mktemp("merged"),
        n_ctx=512,
    )  # fmt: skip


def test_greedy_decoding_is_deterministic_and_streams_the_same_text(gen: Any) -> None:
    params = GenerationParams(max_tokens=24)
    first, second = gen.generate(Q, params), gen.generate(Q, params)
    assert first == second and first.completion_tokens > 0 and first.prompt_tokens == gen.count_prompt_tokens(Q)
    assert "".join(gen.stream(Q, params)) == first.text
    assert "paris" in first.text.lower()


def test_stop_strings_and_length_limit(gen: Any) -> None:
    out = gen.generate(Q, GenerationParams(max_tokens=3))
    assert out.finish_reason == "length" and out.completion_tokens == 3
    text = gen.generate([ChatMessage("user", "Count from 1 to 10, comma separated.")], GenerationParams(max_tokens=40))
    stopped = gen.generate(
        [ChatMessage("user", "Count from 1 to 10, comma separated.")], GenerationParams(max_tokens=40, stop=("5",))
    )
    assert "5" in text.text and "5" not in stopped.text and stopped.finish_reason == "stop"


def test_a_prompt_longer_than_the_context_is_refused(gen: Any) -> None:
    from kgnlp.errors import ValidationError

    with pytest.raises(ValidationError, match="exceeds the context"):
        gen.generate([ChatMessage("user", "word " * 600)], GenerationParams(max_tokens=16))


def test_merged_tensors_equal_hf_weights_plus_the_lora_delta(gguf_file: Path, generator_path: Path, lora: Path,
                                                             tmp_path: Path) -> None:  # fmt: skip
    import gguf
    from safetensors.numpy import load_file

    from models.gguf_merge import _permute, lora_deltas, merge_lora_into_gguf

    out = tmp_path / "merged.gguf"
    info = merge_lora_into_gguf(gguf_file, lora, out, qtype="F32")
    assert info["tensors_merged"] == 2 * 30  # q_proj and v_proj of 30 layers
    base, merged = gguf.GGUFReader(str(gguf_file)), gguf.GGUFReader(str(out))
    base_t = {t.name: t for t in base.tensors}
    hf = load_file(str(generator_path / "model.safetensors"))
    deltas = lora_deltas(lora)
    for t in merged.tensors:
        if t.name in ("blk.3.attn_q.weight", "blk.7.attn_v.weight"):
            layer, module = int(t.name.split(".")[1]), "q_proj" if "attn_q" in t.name else "v_proj"
            expected = hf[f"model.layers.{layer}.self_attn.{module}.weight"] + deltas[(layer, module)]
            if module == "q_proj":  # llama.cpp keeps q/k rows in its rotary order
                expected = _permute(expected, 9)
            np.testing.assert_allclose(np.asarray(t.data), expected, atol=1e-5)
        elif ".attn_q." not in t.name and ".attn_v." not in t.name:  # untouched: the same bytes
            assert np.array_equal(np.asarray(t.data), np.asarray(base_t[t.name].data)), t.name


def test_merged_adapter_shifts_the_logits_as_peft_does(gguf_file: Path, generator_path: Path, lora: Path,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """The adapter's effect on the next-token logits (adapter minus base) in llama.cpp, with the
    adapter merged into a Q8_0 GGUF, matches peft's unmerged forward pass in torch."""
    import torch
    from llama_cpp import Llama
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.gguf_merge import merge_lora_into_gguf

    merge_lora_into_gguf(gguf_file, lora, tmp_path / "m.gguf")
    tok = AutoTokenizer.from_pretrained(str(generator_path))
    ids = list(tok.apply_chat_template([{"role": "user", "content": "Where is my parcel?"}], add_generation_prompt=True,
                                       tokenize=True, return_dict=False))  # fmt: skip

    def llama_logits(path: Path) -> np.ndarray:
        llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, logits_all=True)
        llm.eval(ids)
        logits = np.array(llm.scores[len(ids) - 1])
        llm.close()
        return logits

    base = AutoModelForCausalLM.from_pretrained(str(generator_path), dtype=torch.float32)
    with torch.no_grad():
        t_base = base(torch.tensor([ids])).logits[0, -1].numpy()
        t_lora = PeftModel.from_pretrained(base, str(lora))(torch.tensor([ids])).logits[0, -1].numpy()
    l_base, l_lora = llama_logits(gguf_file), llama_logits(tmp_path / "m.gguf")
    shift_torch, shift_llama = t_lora - t_base, l_lora - l_base
    assert np.linalg.norm(shift_torch) > 10  # the test adapter changes the model a lot
    cosine = shift_torch @ shift_llama / (np.linalg.norm(shift_torch) * np.linalg.norm(shift_llama))
    assert cosine > 0.95, cosine


def test_adapter_requests_use_the_merged_model_and_unknown_adapters_are_refused(gen: Any) -> None:
    from kgnlp.errors import NotFoundError

    params = GenerationParams(max_tokens=16)
    assert gen.adapter_names() == ["alpha"]
    assert gen.generate(Q, params, "alpha").text != gen.generate(Q, params).text
    assert gen.adapters.loaded() == ["alpha"]
    with pytest.raises(NotFoundError, match="not registered"):
        gen.generate(Q, params, "nope")


def test_a_failed_adapter_reload_keeps_the_working_adapter(gen: Any, tmp_path: Path) -> None:
    params = GenerationParams(max_tokens=16)
    before = gen.generate(Q, params, "alpha").text
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, "lora_alpha": 8}')
    with pytest.raises(Exception, match=r"adapter_model\.safetensors"):
        gen.adapters.load("alpha", broken)
    assert gen.generate(Q, params, "alpha").text == before


def test_engine_choice_is_cached_per_cpu(tmp_path: Path, model_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from models import engine

    record = {"engine": "llama.cpp", "cpu_key": "some other CPU", "engines_installed": engine._installed(),
              "method": engine.METHOD}  # fmt: skip
    (tmp_path / engine.ENGINE_FILE).write_text(json.dumps(record))
    assert engine.cached_choice(tmp_path) is None  # measured on another CPU: measure again
    record["cpu_key"] = engine.cpu_key()
    (tmp_path / engine.ENGINE_FILE).write_text(json.dumps(record))
    assert engine.cached_choice(tmp_path) == record
    record["engines_installed"] = ["torch"]  # chosen before llama.cpp was installed
    (tmp_path / engine.ENGINE_FILE).write_text(json.dumps(record))
    assert engine.cached_choice(tmp_path) is None
    record["engines_installed"], record["method"] = engine._installed(), engine.METHOD - 1  # an older rule
    (tmp_path / engine.ENGINE_FILE).write_text(json.dumps(record))
    assert engine.cached_choice(tmp_path) is None


def test_torch_is_chosen_only_when_clearly_faster() -> None:
    """Adapters run unmerged on torch (about half speed) and merged on llama.cpp: a tie or a small
    torch lead (the old rule chose torch at 55.8 vs 43.1 tok/s measured under load) keeps llama.cpp."""
    from models.engine import TORCH_MARGIN, pick

    assert pick({"llama.cpp": 43.1, "torch": 55.8}) == "llama.cpp"
    assert pick({"llama.cpp": 40.0, "torch": 40.0 * TORCH_MARGIN + 0.1}) == "torch"
    assert pick({"torch": 10.0}) == "torch"
    assert pick({"llama.cpp": 95.0, "torch": 49.0}) == "llama.cpp"


SYSTEM = ChatMessage("system", "You are a support assistant. Answer briefly.")


def test_the_same_request_gives_the_same_text_whatever_ran_before(gen: Any) -> None:
    """The system prompt's KV cache is computed once, alone, and reused: every request takes
    the same path, so the answer does not depend on the requests before it."""
    params = GenerationParams(max_tokens=24)
    ask, other = [SYSTEM, ChatMessage("user", "Name a colour.")], [SYSTEM, ChatMessage("user", "Name a fruit.")]
    first = gen.generate(ask, params)
    assert gen._evaluated  # the system prompt is cached
    gen.generate(other, params)
    gen.generate([ChatMessage("user", "Hi")], params)  # no system message: a full prefill
    assert gen.generate(ask, params) == first
    assert "".join(gen.stream(ask, params)) == first.text


@pytest.mark.parametrize("engine", ["llama.cpp", "torch"])
def test_citation_bias_reaches_the_decoder_of_both_engines(gen: Any, local_generator: Any, engine: str) -> None:
    g = gen if engine == "llama.cpp" else local_generator
    messages = [SYSTEM, ChatMessage("user", "<sources>\n[1] Track your order in Order History.\n</sources>\n"
                                            "<customer>\nwhere is my order?\n</customer>")]  # fmt: skip
    plain = g.generate(messages, GenerationParams(max_tokens=8)).text
    forced = g.generate(messages, GenerationParams(max_tokens=8, citation_bias=50.0)).text
    assert not plain.startswith(" [") and forced.startswith(" ["), (plain, forced)


def test_the_citation_nudge_stops_once_a_citation_is_open() -> None:
    from models.llamacpp import _CitationNudge

    nudge = _CitationNudge(bracket=7, bias=2.0, prompt_len=3)
    scores = nudge(np.array([7, 1, 2]), np.zeros(10, np.float32))  # a bracket in the prompt does not count
    assert scores[7] == 2.0 and scores.sum() == 2.0
    scores = nudge(np.array([7, 1, 2, 5, 7, 4]), np.zeros(10, np.float32))  # the answer opened one
    assert not scores.any()


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_or_deadline_stops_the_decode_at_the_next_token(gen: Any, how: str) -> None:
    """#19 items 3 and 7: a set cancel event or ``max_seconds`` ends llama.cpp's decode at the
    next token, generated or streamed; the answer so far is returned as "length"."""
    import threading
    import time

    long = [ChatMessage("user", "Count from 1 to 500, one number per line.")]
    full = gen.generate(long, GenerationParams(max_tokens=300))
    assert full.completion_tokens > 100  # the answer that is to be cut
    params = GenerationParams(max_tokens=300, max_seconds=0.3 if how == "deadline" else None)
    for stream in (False, True):
        cancel = threading.Event()
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        given = cancel if how == "cancel" else None
        t0 = time.monotonic()
        if stream:
            text = "".join(gen.stream(long, params, cancel=given))
        else:
            out = gen.generate(long, params, cancel=given)
            assert out.finish_reason == "length" and out.completion_tokens < full.completion_tokens // 2, out
            text = out.text
        took = time.monotonic() - t0
        timer.cancel()
        assert took < 3 and len(text) < len(full.text) // 2 and full.text.startswith(text), (stream, took, text)

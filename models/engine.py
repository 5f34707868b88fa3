"""Which CPU decode engine serves the generator: measured once per CPU, cached under KGNLP_HOME.

The fastest engine depends on the CPU (llama.cpp's kernels need only AVX2; the torch int4 path
is fast only with AVX-512). ``choose_engine`` decodes the same greedy answer with each engine
that can run here, keeps the fastest and records the figures in ``KGNLP_HOME/engine.json`` with
the CPU they hold for; a service started on another CPU measures again. Both engines keep the
model's perplexity: llama.cpp runs the catalog's own Q4_1 GGUF (the weights the torch model is
dequantized from), torch runs weight-only int4 (perplexity within 0.1 % of fp32, see
benchmarks/generation.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from kgnlp.cpu import cpu_info, cpu_key
from kgnlp.files import atomic_write_json
from models.loading import Quantization

__all__ = ["ENGINE_FILE", "TORCH_QUANTIZATION", "Engine", "cached_choice", "choose_engine", "measure_decode"]

Engine = Literal["llama.cpp", "torch"]
ENGINE_FILE = "engine.json"
TORCH_QUANTIZATION: Quantization = "int4-weight"  # the fastest torch configuration that keeps perplexity
_PROMPT = "A customer asks how to track an online order. Answer in three short sentences."


def measure_decode(generator: Any, tokens: int = 48, repeats: int = 2) -> float:
    """Greedy decode speed of ``generator`` in tokens/s (best of ``repeats``, after a warm-up)."""
    from models.generation import ChatMessage, GenerationParams

    messages = [ChatMessage("user", _PROMPT)]
    generator.generate(messages, GenerationParams(max_tokens=8))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generator.generate(messages, GenerationParams(max_tokens=tokens))
        best = max(best, out.completion_tokens / (time.perf_counter() - t0))
    return best


def cached_choice(home: Path) -> dict[str, Any] | None:
    """The recorded choice, if it was measured on this CPU."""
    path = Path(home) / ENGINE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same_cpu = data.get("cpu_key") == cpu_key() and data.get("engine") in ("llama.cpp", "torch")
    return data if same_cpu and data.get("engines_installed") == _installed() else None


def _installed() -> list[str]:
    """The engines this install can run (a choice made without llama.cpp is re-measured with it)."""
    from models.llamacpp import llama_cpp_available

    return ["llama.cpp", "torch"] if llama_cpp_available() else ["torch"]


def choose_engine(
    home: Path, generator: str = "smollm2-135m-instruct", force: bool = False, report: Any = None
) -> dict[str, Any]:
    """Measure the engines that can run ``generator`` here and record the fastest.

    Args:
        home: kgnlp home (model cache; the choice goes to ``home/engine.json``).
        generator: a catalog model name.
        force: measure again even when a choice for this CPU is recorded.
        report: called with one-line progress messages.

    Returns:
        the record: ``engine``, ``quantization``, ``tokens_per_s`` per engine, ``cpu``, ``cpu_key``.
    """
    from models.catalog import get_model
    from models.provision import ModelCache

    if not force and (cached := cached_choice(home)) is not None:
        return cached
    say = report or (lambda msg: None)
    cache = ModelCache(home, report=say)
    measured: dict[str, float] = {}
    errors: dict[str, str] = {}
    if get_model(generator).gguf_file:
        from models.llamacpp import LlamaCppGenerator, llama_cpp_available

        if llama_cpp_available():
            gen = LlamaCppGenerator.from_files(cache.gguf(generator), cache.ensure(generator), generator)
            measured["llama.cpp"] = round(measure_decode(gen), 1)
            gen.close()
            say(f"llama.cpp: {measured['llama.cpp']} tok/s")
        else:
            errors["llama.cpp"] = "llama-cpp-python is not installed"
    from models.generation import LocalGenerator

    torch_gen = LocalGenerator.from_path(cache.ensure(generator), generator, quantization=TORCH_QUANTIZATION)
    measured["torch"] = round(measure_decode(torch_gen), 1)
    del torch_gen
    say(f"torch {TORCH_QUANTIZATION}: {measured['torch']} tok/s")
    engine = max(measured, key=lambda k: measured[k])
    record = {
        "engine": engine,
        "quantization": "gguf" if engine == "llama.cpp" else TORCH_QUANTIZATION,
        "tokens_per_s": measured,
        "not_measured": errors,
        "engines_installed": _installed(),
        "generator": generator,
        "cpu": cpu_info(),
        "cpu_key": cpu_key(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(Path(home) / ENGINE_FILE, record)
    return record

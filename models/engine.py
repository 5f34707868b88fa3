"""Which CPU decode engine serves the generator: measured once per CPU, cached under KGNLP_HOME.

The fastest engine depends on the CPU (llama.cpp's kernels need only AVX2; the torch int4 path
is fast only with AVX-512). ``choose_engine`` decodes the same greedy answer with each engine
that can run here, keeps the fastest and records the figures in ``KGNLP_HOME/engine.json`` with
the CPU they hold for; a service started on another CPU measures again. Both engines keep the
model's perplexity: llama.cpp runs the catalog's own Q4_1 GGUF (the weights the torch model is
dequantized from), torch runs weight-only int4 (perplexity within 0.1 % of fp32, see
benchmarks/generation.py).

The engines are timed in alternation (three rounds, best of each), so a burst of load from
another process does not fall on one engine only, and torch must beat llama.cpp by
``TORCH_MARGIN``: the service runs the LoRA adapters unmerged on torch (the customer-service
adapter halves its decode speed, measured 15 vs 33 tok/s) while llama.cpp serves them merged
into the GGUF at full speed. A record made by an older rule (``METHOD``) is measured again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from kgnlp.cpu import cpu_info, cpu_key
from kgnlp.files import atomic_write_json
from models.loading import Quantization

__all__ = [
    "ENGINE_FILE",
    "METHOD",
    "TORCH_MARGIN",
    "TORCH_QUANTIZATION",
    "Engine",
    "cached_choice",
    "choose_engine",
    "measure_decode",
    "pick",
]

Engine = Literal["llama.cpp", "torch"]
ENGINE_FILE = "engine.json"
TORCH_QUANTIZATION: Quantization = "int4-weight"  # the fastest torch configuration that keeps perplexity
TORCH_MARGIN = 2.0  # torch must be this much faster on the base model: the adapters it runs unmerged halve its speed
METHOD = 2  # the measuring rule; records of another rule are measured again (1: one pass each, no margin)
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
    current = data.get("method") == METHOD and data.get("engines_installed") == _installed()
    return data if same_cpu and current else None


def pick(tokens_per_s: dict[str, float]) -> str:
    """The engine to serve with: llama.cpp unless torch is ``TORCH_MARGIN`` times faster (or alone)."""
    if "llama.cpp" not in tokens_per_s:
        return "torch"
    if "torch" in tokens_per_s and tokens_per_s["torch"] >= TORCH_MARGIN * tokens_per_s["llama.cpp"]:
        return "torch"
    return "llama.cpp"


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
    errors: dict[str, str] = {}
    generators: dict[str, Any] = {}
    if get_model(generator).gguf_file:
        from models.llamacpp import LlamaCppGenerator, llama_cpp_available

        if llama_cpp_available():
            generators["llama.cpp"] = LlamaCppGenerator.from_files(
                cache.gguf(generator), cache.ensure(generator), generator
            )
        else:
            errors["llama.cpp"] = "llama-cpp-python is not installed"
    from models.generation import LocalGenerator

    generators["torch"] = LocalGenerator.from_path(cache.ensure(generator), generator, quantization=TORCH_QUANTIZATION)
    measured = {name: 0.0 for name in generators}
    for _ in range(3):  # alternate, so a burst of outside load does not fall on one engine only
        for name, gen in generators.items():
            measured[name] = max(measured[name], round(measure_decode(gen, repeats=1), 1))
    for name, gen in generators.items():
        if hasattr(gen, "close"):
            gen.close()
        say(f"{name}{'' if name == 'llama.cpp' else ' ' + TORCH_QUANTIZATION}: {measured[name]} tok/s")
    generators.clear()
    engine = pick(measured)
    record = {
        "engine": engine,
        "quantization": "gguf" if engine == "llama.cpp" else TORCH_QUANTIZATION,
        "tokens_per_s": measured,
        "not_measured": errors,
        "method": METHOD,
        "torch_margin": TORCH_MARGIN,
        "engines_installed": _installed(),
        "generator": generator,
        "cpu": cpu_info(),
        "cpu_key": cpu_key(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(Path(home) / ENGINE_FILE, record)
    return record

"""Generation speed and fidelity on this CPU: fp32 baseline vs the quantized configurations and
the llama.cpp engine.

Configurations: ``fp32``, ``int8-dynamic``, ``int8-weight``, ``int4-weight`` (torch), ``llama.cpp``
(our ``LlamaCppGenerator`` on the catalog's Q4_1 GGUF, the service's engine where it is faster),
``llama.cpp+cs`` (the same with the ``customer_service`` adapter merged into its GGUF) and
``llama.cpp-raw`` (llama-cpp-python's own ``create_chat_completion`` on the same GGUF: the
reference "llama.cpp" figure, measured the way a user of that library gets it).

For each configuration, in one process with the same prompts:
  single-stream decode tokens/s streamed (time-to-first-token too), not streamed, and through transformers'
  ``generate`` (the reference the decode loop is checked against), aggregate tokens/s for
  4 concurrent requests (serialized one after another vs one static batch of 4), peak RSS,
  greedy agreement with fp32 (exact text and token prefix), and perplexity on held-out text.

    .venv/bin/python benchmarks/generation.py [--configs fp32,int8-dynamic,int8-weight,int4-weight] [--tokens 64]

Ends with one summary line: speedup = single-stream tok/s of the fastest configuration whose
perplexity stays within 5 % of fp32, over fp32 single-stream tok/s; vs_llamacpp = the service's
default engine over raw llama.cpp (vs_llamacpp_adapter: with the adapter); the CPU and its ISA.
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences what a knowledge graph is.",
    "How do I reset my password?",
    "Write a short, polite reply to a customer whose order is late.",
    "List three benefits of regular exercise.",
    "What does a central bank do?",
    "Summarise the plot of Romeo and Juliet in one sentence.",
    "Give me a tip for writing clean Python code.",
]

# Held-out text for perplexity (written for this benchmark, not from any training set).
HELD_OUT = (
    "The shop opens at nine in the morning and closes at six in the evening. Customers who ordered "
    "online can collect their parcels at the service desk near the entrance. If a parcel is damaged, "
    "the staff will open a claim and send a replacement within three working days. Refunds are paid "
    "to the original card, and the money usually arrives within a week. The company also runs a "
    "newsletter with seasonal offers, which anyone can cancel at any time from their account page. "
    "Last year the firm opened two new stores and hired forty people, mostly in logistics and support."
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RawLlamaCpp:
    """llama-cpp-python's own chat API on a GGUF (no kgnlp code in the loop): the reference."""

    def __init__(self, gguf: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
        import os

        from llama_cpp import Llama

        cores = len(os.sched_getaffinity(0))
        self.gguf, self.tokenizer = gguf, tokenizer
        self.llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=cores, n_threads_batch=cores, verbose=False)

    def _messages(self, conv):  # type: ignore[no-untyped-def]
        return [{"role": m.role, "content": m.content} for m in conv]

    def stream(self, conv, params):  # type: ignore[no-untyped-def]
        for chunk in self.llm.create_chat_completion(self._messages(conv), max_tokens=params.max_tokens,
                                                     temperature=0.0, stream=True):  # fmt: skip
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                yield text

    def generate(self, conv, params):  # type: ignore[no-untyped-def]
        from models.generation import GenerationResult

        out = self.llm.create_chat_completion(self._messages(conv), max_tokens=params.max_tokens, temperature=0.0)
        usage = out["usage"]
        return GenerationResult(out["choices"][0]["message"]["content"] or "", "stop", usage["prompt_tokens"],
                                usage["completion_tokens"])  # fmt: skip

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


class WithAdapter:
    """A generator whose every request goes to one adapter."""

    def __init__(self, gen, adapter: str) -> None:  # type: ignore[no-untyped-def]
        self.gen, self.adapter = gen, adapter
        self.tokenizer = gen.tokenizer
        self.gguf = gen.adapters.merged_path(adapter)

    def stream(self, conv, params):  # type: ignore[no-untyped-def]
        return self.gen.stream(conv, params, self.adapter)

    def generate(self, conv, params):  # type: ignore[no-untyped-def]
        return self.gen.generate(conv, params, self.adapter)

    def count_tokens(self, text: str) -> int:
        return int(self.gen.count_tokens(text))


def load(path: Path, config: str):  # type: ignore[no-untyped-def]
    from kgnlp.files import default_home
    from models.generation import LocalGenerator

    if config.startswith("llama.cpp"):
        from models.llamacpp import LlamaCppGenerator
        from models.provision import ModelCache

        home = default_home()
        gguf = ModelCache(home).gguf("smollm2-135m-instruct")
        gen = LlamaCppGenerator.from_files(gguf, path, config, adapter_dir=home / "adapters",
                                           cache_dir=home / "gguf" / "merged")  # fmt: skip
        gen.gguf = gguf  # type: ignore[attr-defined]
        if config == "llama.cpp-raw":
            return RawLlamaCpp(gguf, gen.tokenizer)
        if config == "llama.cpp+cs":
            return WithAdapter(gen, "customer_service")
        return gen
    quant = "none" if config == "fp32" else config
    gen = LocalGenerator.from_path(path, name=config, quantization=quant)  # type: ignore[arg-type]
    return gen


def perplexity(gen, text: str) -> float:  # type: ignore[no-untyped-def]
    import torch

    ids = gen.tokenizer(text, return_tensors="pt")["input_ids"]
    if hasattr(gen, "gguf"):  # llama.cpp: the same text through a context that keeps every position's logits
        import numpy as np
        from llama_cpp import Llama

        llm = Llama(model_path=str(gen.gguf), n_ctx=512, logits_all=True, verbose=False)
        tokens = ids[0].tolist()
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits[np.arange(len(tokens) - 1), tokens[1:]] - np.log(np.exp(logits).sum(axis=1))
        llm.close()
        return math.exp(-float(logp.mean()))
    with torch.inference_mode():
        loss = gen.model(input_ids=ids, labels=ids).loss
    return math.exp(float(loss))


def measure(gen, tokens: int) -> dict[str, float | list[str]]:  # type: ignore[no-untyped-def]
    from models.generation import ChatMessage, GenerationParams

    params = GenerationParams(max_tokens=tokens)
    convs = [[ChatMessage("user", p)] for p in PROMPTS]
    gen.generate(convs[0], GenerationParams(max_tokens=4))  # warm-up
    # single stream: decode rate and time to first token, streamed like the API does
    rates, ttfts, texts = [], [], []
    for conv in convs:
        t0 = time.perf_counter()
        first = None
        pieces = []
        for delta in gen.stream(conv, params):
            if first is None:
                first = time.perf_counter() - t0
            pieces.append(delta)
        total = time.perf_counter() - t0
        n = gen.count_tokens("".join(pieces))
        rates.append(n / total)
        ttfts.append(first or total)
    # the same requests not streamed (one `generate` call each: what a non-streaming API call gets)
    whole = []
    for conv in convs:
        t0 = time.perf_counter()
        result = gen.generate(conv, params)
        whole.append(result.completion_tokens / (time.perf_counter() - t0))
        texts.append(result.text)
    # reference: transformers' own generate on the same single requests (generate() is our decode loop)
    hf = []
    batching = hasattr(gen, "generate_batch")  # llama.cpp configurations: one request at a time
    for conv in convs if batching else []:
        t0 = time.perf_counter()
        result = gen.generate_batch([conv], params)[0]
        hf.append(result.completion_tokens / (time.perf_counter() - t0))
    # four concurrent requests: one after another vs one static batch
    four = convs[:4]
    t0 = time.perf_counter()
    serial = [gen.generate(c, params) for c in four]
    serial_rate = sum(r.completion_tokens for r in serial) / (time.perf_counter() - t0)
    batch_rate = float("nan")
    if batching:
        t0 = time.perf_counter()
        batched = gen.generate_batch(four, params)
        batch_rate = sum(r.completion_tokens for r in batched) / (time.perf_counter() - t0)
    return {
        "tok_s": statistics.median(rates),
        "tok_s_whole": statistics.median(whole),
        "tok_s_hf": statistics.median(hf) if hf else float("nan"),
        "ttft_ms": statistics.median(ttfts) * 1000,
        "agg4_serial": serial_rate,
        "agg4_batched": batch_rate,
        "ppl": perplexity(gen, HELD_OUT),
        "texts": texts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="fp32,int4-weight,llama.cpp-raw,llama.cpp,llama.cpp+cs")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    import torch

    from kgnlp.cpu import cpu_key
    from kgnlp.files import default_home
    from models.engine import cached_choice
    from models.provision import ModelCache

    if args.threads:
        torch.set_num_threads(args.threads)
    path = ModelCache(default_home()).ensure("smollm2-135m-instruct")
    results: dict[str, dict] = {}
    for config in args.configs.split(","):
        gen = load(path, config)
        results[config] = measure(gen, args.tokens)
        results[config]["rss_mb"] = rss_mb()
        print(f"{config}: {results[config]['tok_s']:.1f} tok/s", file=sys.stderr, flush=True)
        del gen
        gc.collect()
    ref = results["fp32"]
    tok = __import__("transformers").AutoTokenizer.from_pretrained(str(path))
    print(f"\nSmolLM2-135M-Instruct, {len(PROMPTS)} prompts, greedy, {args.tokens} new tokens, "
          f"torch threads={torch.get_num_threads()}; CPU: {cpu_key()}")  # fmt: skip
    print("| config | tok/s single (streamed) | tok/s single (not streamed) | tok/s single (transformers generate) "
          "| TTFT p50 ms | agg tok/s 4 serial "
          "| agg tok/s 4 batched | peak RSS MB | same text as fp32 | token agreement | perplexity |")  # fmt: skip
    print("|---" * 11 + "|")
    for config, r in results.items():
        same = sum(a == b for a, b in zip(r["texts"], ref["texts"], strict=True)) / len(PROMPTS)
        agree = []
        for a, b in zip(r["texts"], ref["texts"], strict=True):
            ta, tb = tok.encode(a), tok.encode(b)
            prefix = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), min(len(ta), len(tb)))
            agree.append(prefix / max(1, len(tb)))
        r["same"], r["agree"] = same, statistics.mean(agree)
        print(f"| {config} | {r['tok_s']:.1f} | {r['tok_s_whole']:.1f} | {r['tok_s_hf']:.1f} "
              f"| {r['ttft_ms']:.0f} | {r['agg4_serial']:.1f} "
              f"| {r['agg4_batched']:.1f} | {r['rss_mb']:.0f} | {same:.2f} | {r['agree']:.2f} "
              f"| {r['ppl']:.2f} |")  # fmt: skip
    # the best configuration is the fastest one that keeps quality (perplexity within 5 % of fp32)
    kept = [c for c in results if results[c]["ppl"] < 1.05 * ref["ppl"] and c != "llama.cpp+cs"]
    best = max(kept, key=lambda c: results[c]["tok_s"])
    b = results[best]
    cmd = f".venv/bin/python benchmarks/generation.py --configs {args.configs} --tokens {args.tokens}"
    print(f"\ncommand: {cmd}")
    print(
        f"best={best} fp32_tok_s={ref['tok_s']:.1f} best_tok_s={b['tok_s']:.1f} "
        f"speedup={b['tok_s'] / ref['tok_s']:.2f} "
        f"speedup_not_streamed={b['tok_s_whole'] / ref['tok_s_whole']:.2f} "
        f"speedup_transformers_generate={b['tok_s_hf'] / ref['tok_s_hf']:.2f} "
        f"best_agg4_tok_s={max(b['agg4_serial'], b['agg4_batched']):.1f} ttft_ms={b['ttft_ms']:.0f} "
        f"ppl_rise_pct={100 * (b['ppl'] / ref['ppl'] - 1):.1f} same_text={b['same']:.2f}"
        + _vs_llamacpp(results, cached_choice(default_home()))
        + f" cpu={cpu_key().split(' | ')[0].replace(' ', '_')} isa={'+'.join(cpu_key().split(' | ')[1].split())}"
    )


def _vs_llamacpp(results: dict[str, dict], choice: dict | None) -> str:
    """The service's default engine (as ``kgnlp cs setup`` chose it on this CPU) against raw llama.cpp."""
    raw = results.get("llama.cpp-raw")
    if raw is None:
        return ""
    default = "llama.cpp" if choice is None or choice["engine"] == "llama.cpp" else "int4-weight"
    out = f" default_engine={default}"
    if default in results:
        out += f" vs_llamacpp={results[default]['tok_s'] / raw['tok_s']:.2f}"
    if "llama.cpp+cs" in results and default == "llama.cpp":
        cs = results["llama.cpp+cs"]
        out += f" vs_llamacpp_adapter={cs['tok_s'] / raw['tok_s']:.2f}"
        out += f" adapter_speed_ratio={cs['tok_s'] / results['llama.cpp']['tok_s']:.2f}"
    return out


if __name__ == "__main__":
    main()

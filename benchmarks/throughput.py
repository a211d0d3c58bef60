"""Output tokens/s of PoLar programs against stock vLLM, in one run on one machine.

Model: a random Qwen2-shaped checkpoint (24 layers, d=896, 14 heads / 2 KV heads, ff 4864 —
the shape of Qwen2.5-0.5B with a 32k vocabulary), float32.  Every configuration serves the
same workload (``--requests`` prompts of ``--prompt-len`` tokens, ``--max-tokens`` output
tokens each, EOS ignored) and reports the median of ``--runs`` timed runs after one warm-up.

Compared, each against its own physical limit:
- PoLar identity vs stock (same eager setting, and stock's default compiled setting);
- PoLar 50 % / 75 % / 125 % programs vs stock checkpoints of 12 / 18 / 30 layers;
- a batch of 8 different programs (mean length 24) vs a uniform batch of identity.
Also the KV-cache capacity in tokens for stock and for S = D and S = 1.25 D.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

DEPTH = 24
CACHE = Path(os.environ.get("VLLM_POLAR_CACHE", Path.home() / ".cache" / "vllm-polar")) / "bench"

HALF = tuple(range(0, DEPTH, 2))
THREE_QUARTERS = tuple(i for i in range(DEPTH) if i % 4 != 3)
WITH_LOOP = (*range(0, 14), *range(8, DEPTH))  # layers 8-13 run twice: 30 steps
# Eight programs of mean length 24: identity with blocks skipped, or with a block looped.
MIXED = (
    tuple(range(0, 18)),
    (*range(0, 10), *range(15, DEPTH)),
    (*range(0, 21),),
    (*range(0, 12), *range(13, DEPTH)),
    (*range(0, DEPTH), 23),
    (*range(0, 16), *range(13, DEPTH)),
    (*range(0, 14), *range(9, DEPTH)),
    WITH_LOOP,
)


def checkpoint(num_layers: int) -> Path:
    """Seeded random Qwen2-shaped checkpoint with ``num_layers`` layers (built once, cached)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    path = CACHE / f"qwen2-d896-l{num_layers}"
    if (path / "config.json").exists():
        return path
    config = Qwen2Config(
        vocab_size=32000,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=num_layers,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(path)
    return path


def tokens_per_second(llm, programs: list[tuple[int, ...] | None], args) -> tuple[float, list]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompts = [
        TokensPrompt(
            prompt_token_ids=[(31 * i + 7 * j) % 31000 + 100 for j in range(args.prompt_len)]
        )
        for i in range(args.requests)
    ]
    params = [
        SamplingParams(
            max_tokens=args.max_tokens,
            temperature=0,
            ignore_eos=True,
            extra_args=None if p is None else {"polar_program": list(p)},
        )
        for p in (programs * args.requests)[: args.requests]
    ]
    llm.generate(prompts, params, use_tqdm=False)  # warm-up
    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        rates.append(sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed)
    return statistics.median(rates), rates


def engine(path: Path, polar: dict | None = None, eager: bool = True):
    from vllm import LLM

    extra = {"additional_config": {"polar": polar}} if polar is not None else {}
    return LLM(
        model=str(path),
        dtype="float32",
        max_model_len=1024,
        enforce_eager=eager,
        enable_prefix_caching=False,
        seed=0,
        **extra,
    )


def close(llm) -> int:
    """Shut the engine down; returns its KV capacity in tokens."""
    cache = llm.llm_engine.vllm_config.cache_config
    capacity = cache.num_gpu_blocks * cache.block_size
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return capacity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()

    results: dict[str, dict] = {}

    def record(name: str, llm, programs) -> None:
        median, rates = tokens_per_second(llm, programs, args)
        results[name] = {"tokens_per_s": median, "runs": rates}
        print(f"{name:28s} {median:8.1f} tok/s  {[round(r, 1) for r in rates]}", flush=True)

    full = checkpoint(DEPTH)
    llm = engine(full, eager=False)
    record("stock compiled", llm, [None])
    close(llm)
    llm = engine(full)
    record("stock eager", llm, [None])
    capacity = {"stock": close(llm)}
    for layers in (12, 18, 30):
        llm = engine(checkpoint(layers))
        record(f"stock {layers} layers", llm, [None])
        close(llm)
    llm = engine(full, {"max_steps": 30})
    record("polar identity", llm, [tuple(range(DEPTH))])
    record("polar 50%", llm, [HALF])
    record("polar 75%", llm, [THREE_QUARTERS])
    record("polar 125%", llm, [WITH_LOOP])
    record("polar mixed 8 programs", llm, list(MIXED))
    capacity["polar S=30"] = close(llm)
    llm = engine(full, {"max_steps": DEPTH})
    capacity["polar S=24"] = close(llm)

    def ratio(a: str, b: str) -> float:
        return results[a]["tokens_per_s"] / results[b]["tokens_per_s"]

    ratios = {
        "identity / stock eager (goal >= 0.95)": ratio("polar identity", "stock eager"),
        "identity / stock compiled": ratio("polar identity", "stock compiled"),
        "50% / stock 12 layers (goal >= 0.9)": ratio("polar 50%", "stock 12 layers"),
        "75% / stock 18 layers (goal >= 0.9)": ratio("polar 75%", "stock 18 layers"),
        "125% / stock 30 layers (goal >= 0.9)": ratio("polar 125%", "stock 30 layers"),
        "mixed / uniform identity (goal >= 0.85)": ratio(
            "polar mixed 8 programs", "polar identity"
        ),
    }
    print()
    for name, value in ratios.items():
        print(f"{name:42s} {value:.3f}")
    for name, tokens in capacity.items():
        print(f"KV capacity {name:12s} {tokens:,} tokens")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": vars(args) | {"out": str(args.out)},
                "results": results,
                "ratios": ratios,
                "kv_capacity_tokens": capacity,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

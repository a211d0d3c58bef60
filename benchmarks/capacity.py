"""KV capacity and KV-bound throughput of PoLar programs against stock vLLM, same KV memory.

Model: the random Qwen2-shaped checkpoint of ``throughput.py`` (24 layers, the shape of
Qwen2.5-0.5B), float32, every engine given the same ``--kv-mib`` of KV memory.  The workload
asks for more KV than stock holds: ``--requests`` prompts of ``--prompt-len`` tokens, each
decoding ``--max-tokens`` tokens (EOS ignored), all submitted at once, so the scheduler
queues and preempts by the pages each request really holds.  The engine core runs in this
process and the benchmark steps it itself, reading after every step the tokens the running
requests hold in KV (their computed tokens): the peak is the engine's capacity in tokens on
this workload.  Output tokens/s is timed over the same steps (``--runs`` runs per engine after
one warm-up run; medians).  Whole requests pack a pool unevenly, so each engine also runs a
*fill* workload once: ``--fill-requests`` requests of one KV block each (prompt and output
together), enough to exceed every engine's pool; its peak is the pool's capacity at the
workload's program, to within one block.

Engines, one after another: stock; PoLar (S = 30) with every request at the identity, at a
50 % program (every other layer), at a 125 % program (layers 8-13 looped), and a mixed
predictor-like workload (searched programs, one per request); then the identity again on an
engine of S = 2·D slots, for what each slot costs per step.

    python benchmarks/capacity.py --runs 3 --out benchmarks/results/capacity.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
from pathlib import Path

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the scheduler is read between steps

from plan import search_programs  # noqa: E402  (benchmarks/, beside this script)
from throughput import DEPTH, HALF, WITH_LOOP, checkpoint  # noqa: E402

from polar.search.records import code_version  # noqa: E402

# Every engine gets --kv-mib through ``kv_cache_memory_bytes``; the CPU backend's GiB-sized
# VLLM_CPU_KVCACHE_SPACE (set by throughput.py) would override it.
os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
IDENTITY = tuple(range(DEPTH))
SLOTS = 30


def engine(path: Path, polar: dict | None, kv_bytes: int):
    from vllm import LLM

    extra = {"additional_config": {"polar": polar}} if polar is not None else {}
    return LLM(
        model=str(path),
        dtype="float32",
        max_model_len=512,
        block_size=32,  # the CPU backend's smallest
        enforce_eager=True,
        enable_prefix_caching=False,
        kv_cache_memory_bytes=kv_bytes,
        seed=0,
        **extra,
    )


def workload_run(
    llm, programs: list[tuple[int, ...] | None], shape: tuple[int, int, int], tag: str
) -> dict:
    """Submit every request of ``shape`` (requests, prompt tokens, output tokens), step the
    engine until all finish; peak KV tokens and tok/s."""
    from vllm import SamplingParams

    engine_ = llm.llm_engine
    scheduler = engine_.engine_core.engine_core.scheduler
    requests, prompt_len, max_tokens = shape
    for i in range(requests):
        program = programs[i % len(programs)]
        prompt = [(31 * i + 7 * j) % 31000 + 100 for j in range(prompt_len)]
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=0,
            ignore_eos=True,
            extra_args=None if program is None else {"polar_program": list(program)},
        )
        engine_.add_request(f"{tag}-{i}", {"prompt_token_ids": prompt}, params)
    seen: dict[str, object] = {}  # every request object, for its preemption count
    peak, steps, generated = 0, 0, 0
    start = time.perf_counter()
    while engine_.has_unfinished_requests():
        for output in engine_.step():
            if output.finished:
                generated += len(output.outputs[0].token_ids)
        steps += 1
        peak = max(peak, sum(r.num_computed_tokens for r in scheduler.running))
        seen.update((r.request_id, r) for r in (*scheduler.running, *scheduler.waiting))
    elapsed = time.perf_counter() - start
    return {
        "peak_tokens": peak,
        "tokens_per_s": generated / elapsed,
        "steps": steps,
        "seconds": elapsed,
        "preemptions": sum(r.num_preemptions for r in seen.values()),
    }


def measure(path: Path, polar: dict | None, programs: list, args) -> dict:
    llm = engine(path, polar, args.kv_mib << 20)
    config = llm.llm_engine.vllm_config.cache_config
    pages = config.num_gpu_blocks
    shape = (args.requests, args.prompt_len, args.max_tokens)
    workload_run(llm, programs, shape, "warmup")
    runs = [workload_run(llm, programs, shape, f"run{r}") for r in range(args.runs)]
    fill_output = 8  # prompt + output - 1 computed tokens: one block
    fill = (args.fill_requests, config.block_size - fill_output, fill_output)
    fill_peak = workload_run(llm, programs, fill, "fill")["peak_tokens"]
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return {
        "pool_blocks": pages,
        "block_size": config.block_size,
        "peak_tokens": statistics.median(r["peak_tokens"] for r in runs),
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "fill_peak_tokens": fill_peak,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kv-mib", type=int, default=32, help="KV memory of every engine")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=160)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fill-requests", type=int, default=128, help="one-block requests")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/capacity.json"))
    args = parser.parse_args()

    path = checkpoint(DEPTH)
    polar = {"max_steps": SLOTS}
    searched = random.Random(0).sample(search_programs(SLOTS), args.requests)
    rows: dict[str, dict] = {}
    for label, config, programs in (
        ("stock", None, [None]),
        ("identity", polar, [IDENTITY]),
        ("50% program", polar, [HALF]),
        ("125% program", polar, [WITH_LOOP]),
        ("searched programs, one per request", polar, searched),
        (f"identity, S = {2 * DEPTH}", {"max_steps": 2 * DEPTH}, [IDENTITY]),
    ):
        rows[label] = measure(path, config, programs, args)
        row = rows[label]
        print(
            f"{label:38s} pool {row['pool_blocks']:6d} blocks  peak KV {row['peak_tokens']:7.0f} "
            f"tokens  {row['tokens_per_s']:6.1f} tok/s  fill peak {row['fill_peak_tokens']:6d}",
            flush=True,
        )
    stock = rows["stock"]
    for row in rows.values():
        row["capacity_vs_stock"] = row["peak_tokens"] / stock["peak_tokens"]
        row["throughput_vs_stock"] = row["tokens_per_s"] / stock["tokens_per_s"]
        row["fill_capacity_vs_stock"] = row["fill_peak_tokens"] / stock["fill_peak_tokens"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "commit": code_version(),
                "settings": vars(args) | {"out": str(args.out)},
                "rows": rows,
            },
            indent=2,
        )
    )
    print("\nlabel                                  capacity/stock  tok/s/stock  fill/stock")
    for label, row in rows.items():
        print(
            f"{label:38s} {row['capacity_vs_stock']:14.3f} {row['throughput_vs_stock']:12.3f} "
            f"{row['fill_capacity_vs_stock']:11.3f}"
        )


if __name__ == "__main__":
    main()

"""Output tokens/s of PoLar programs against stock vLLM, in one run on one machine.

Model: a random Qwen2-shaped checkpoint (24 layers, d=896, 14 heads / 2 KV heads, ff 4864 —
the shape of Qwen2.5-0.5B with a 32k vocabulary), float32.  Every configuration serves the
same workload (``--requests`` prompts of ``--prompt-len`` tokens, ``--max-tokens`` output
tokens each, EOS ignored).  A PoLar/stock ratio comes from four engine lifetimes, each engine
alive alone, in the order stock, PoLar, PoLar, stock, each timed ``--runs`` times after a
warm-up (medians over both lifetimes of a side); mixed vs uniform runs on one PoLar engine, the
two workloads timed in turn.

Compared, each against its own physical limit:
- PoLar identity vs stock (same eager setting, and stock's default compiled setting);
- PoLar 50 % / 75 % / 125 % programs vs stock checkpoints of 12 / 18 / 30 layers;
- a batch of 8 different programs (mean length 24) vs a uniform batch of identity, at
  ``--requests`` requests (one per program) and at 8x that many (each program 8 times).
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
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

DEPTH = 24
ALL_CPUS = frozenset(os.sched_getaffinity(0))
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


@dataclass
class Workload:
    """One configuration's requests: ``programs`` cycled over ``requests`` prompts."""

    llm: object
    programs: list[tuple[int, ...] | None]
    requests: int

    def run(self, args) -> float:
        """One timed ``generate``; output tokens/s."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [
            TokensPrompt(
                prompt_token_ids=[(31 * i + 7 * j) % 31000 + 100 for j in range(args.prompt_len)]
            )
            for i in range(self.requests)
        ]
        params = [
            SamplingParams(
                max_tokens=args.max_tokens,
                temperature=0,
                ignore_eos=True,
                extra_args=None if p is None else {"polar_program": list(p)},
            )
            for p in (self.programs * self.requests)[: self.requests]
        ]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        return sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed


def interleaved(workloads: dict[str, Workload], args) -> dict[str, dict]:
    """Warm each workload up once, then time them in turn ``args.runs`` times (so a drift of
    the machine's speed hits every one alike); median and runs per name."""
    for workload in workloads.values():
        workload.run(args)
    rates: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(args.runs):
        for name, workload in workloads.items():
            rates[name].append(workload.run(args))
    return {
        name: {"tokens_per_s": statistics.median(runs), "runs": runs}
        for name, runs in rates.items()
    }


def engine(path: Path, polar: dict | None = None, eager: bool = True):
    from vllm import LLM

    extra = {"additional_config": {"polar": polar}} if polar is not None else {}
    # vLLM picks the worker's cores from the affinity of the process that starts the engine.
    pin(os.getpid(), ALL_CPUS)
    llm = LLM(
        model=str(path),
        dtype="float32",
        max_model_len=1024,
        enforce_eager=eager,
        enable_prefix_caching=False,
        seed=0,
        **extra,
    )
    keep_off_worker_cores(llm)
    return llm


def keep_off_worker_cores(llm) -> None:
    """Pin this process and the engine's scheduler process to the CPUs the worker does not use.

    vLLM binds the CPU worker to its cores and leaves the other processes free to run anywhere.
    On the 2-core development machine the scheduler process was busy (~90 % of a CPU) while
    serving, and the same engine served 11 tok/s in one lifetime and 28 in another.
    """
    import psutil

    scheduler = psutil.Process(llm.llm_engine.engine_core.resources.engine_manager.processes[0].pid)
    bound = [set(p.cpu_affinity()) for p in scheduler.children(recursive=True)]
    spare = ALL_CPUS - set().union(*(cpus for cpus in bound if cpus != ALL_CPUS))
    if spare != ALL_CPUS and spare:
        pin(scheduler.pid, spare)
        pin(os.getpid(), spare)


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Set the CPU affinity of every thread of process ``pid``."""
    import psutil

    for thread in psutil.Process(pid).threads():
        os.sched_setaffinity(thread.id, cpus)


def pair_engine(name: str, stock_path: Path, eager: bool):
    """One side of a PoLar/stock pair: PoLar (S = 30) on the 24-layer model, or stock."""
    if name == "polar":
        return engine(checkpoint(DEPTH), {"max_steps": 30})
    return engine(stock_path, eager=eager)


def alone_pair(program: tuple[int, ...], stock_path: Path, eager: bool, args) -> dict:
    """PoLar vs stock, each engine alive alone, in the order stock, PoLar, PoLar, stock (which
    cancels a linear drift of the machine's speed); medians over all runs of a side.

    Engines alive side by side did not give stable ratios on the development machine: the
    same identity / stock pair measured 0.56 with PoLar started first and 2.03 with stock
    started first, minutes apart.
    """
    runs: dict[str, list[float]] = {"polar": [], "stock": []}
    capacity = {}
    for name in ("stock", "polar", "polar", "stock"):
        llm = pair_engine(name, stock_path, eager)
        workload = Workload(llm, [program if name == "polar" else None], args.requests)
        runs[name] += interleaved({name: workload}, args)[name]["runs"]
        capacity[name] = close(llm)
    timed = {name: {"tokens_per_s": statistics.median(r), "runs": r} for name, r in runs.items()}
    ratio = timed["polar"]["tokens_per_s"] / timed["stock"]["tokens_per_s"]
    return timed | {"ratio": ratio, "kv_capacity_tokens": capacity}


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

    full = checkpoint(DEPTH)
    identity = tuple(range(DEPTH))
    comparisons: dict[str, dict] = {}
    capacity = {}

    for label, program, stock_path, eager in (
        ("identity / stock compiled", identity, full, False),
        ("identity / stock eager (goal >= 0.95)", identity, full, True),
        ("50% / stock 12 layers (goal >= 0.9)", HALF, checkpoint(12), True),
        ("75% / stock 18 layers (goal >= 0.9)", THREE_QUARTERS, checkpoint(18), True),
        ("125% / stock 30 layers (goal >= 0.9)", WITH_LOOP, checkpoint(30), True),
    ):
        timed = alone_pair(program, stock_path, eager, args)
        comparisons[label] = timed
        if stock_path == full and eager:
            capacity["stock"] = timed["kv_capacity_tokens"]["stock"]
        print(
            f"{label:40s} polar {timed['polar']['tokens_per_s']:.1f} / stock "
            f"{timed['stock']['tokens_per_s']:.1f} tok/s = {timed['ratio']:.3f}",
            flush=True,
        )

    polar = engine(full, {"max_steps": 30})
    for label, requests in (
        ("mixed / uniform identity (goal >= 0.85)", args.requests),
        ("mixed / uniform identity, 8x requests", 8 * args.requests),
    ):
        timed = interleaved(
            {
                "mixed": Workload(polar, list(MIXED), requests),
                "uniform": Workload(polar, [identity], requests),
            },
            args,
        )
        timed["ratio"] = timed["mixed"]["tokens_per_s"] / timed["uniform"]["tokens_per_s"]
        comparisons[label] = timed
        print(
            f"{label:40s} mixed {timed['mixed']['tokens_per_s']:.1f} / uniform "
            f"{timed['uniform']['tokens_per_s']:.1f} tok/s = {timed['ratio']:.3f}",
            flush=True,
        )
    capacity["polar S=30"] = close(polar)
    capacity["polar S=24"] = close(engine(full, {"max_steps": DEPTH}))
    for name, tokens in capacity.items():
        print(f"KV capacity {name:12s} {tokens:,} tokens")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": vars(args) | {"out": str(args.out)},
                "comparisons": comparisons,
                "kv_capacity_tokens": capacity,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

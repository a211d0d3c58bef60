"""Output tokens/s of PoLar programs against stock vLLM, in one run on one machine.

Model: a random Qwen2-shaped checkpoint (24 layers, d=896, 14 heads / 2 KV heads, ff 4864 —
the shape of Qwen2.5-0.5B with a 32k vocabulary), float32.  Every configuration serves the
same workload (``--requests`` prompts of ``--prompt-len`` tokens, ``--max-tokens`` output
tokens each, EOS ignored).  Two engines are alive together and their workloads are timed in
alternating rounds (A B, then B A, ``--runs`` rounds after a warm-up; median of the per-round
ratios).  Each PoLar/stock pair is measured twice on fresh engines, once per start order, and
the two ratios combined by geometric mean.  All workers share one core, the schedulers and this
process the other; an idle engine's worker sleeps, so the side being timed has the core to
itself.  Two stock engines of one checkpoint, measured the same way, give the noise floor.
Mixed and uniform batches run on one PoLar engine (S = 30), timed in alternating rounds.

Compared, each against its own physical limit:
- PoLar identity vs stock (same eager setting, and stock's default compiled setting);
- PoLar 50 % / 75 % / 125 % programs vs stock checkpoints of 12 / 18 / 30 layers;
- a batch of 8 different programs (mean length 24) vs a uniform batch of identity, at
  ``--requests`` requests (one per program) and at 8x that many (each program 8 times).
KV capacity has its own benchmark (``capacity.py``).

    python benchmarks/throughput.py --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

from plan import search_programs  # noqa: E402  (benchmarks/plan.py, beside this script)

from polar.search.records import code_version  # noqa: E402

DEPTH = 24
IDLE_S = 1.5
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


def rounds(workloads: dict[str, Workload], args) -> dict:
    """Time two workloads in alternating rounds; the ratio is first / second.

    After one warm-up run each, every round times both back to back, A then B, and the next
    round B then A, so a drift of the machine's speed within a round hits both alike.  The ratio
    is the median of the ``args.runs`` per-round ratios.
    """
    first, second = workloads
    for workload in workloads.values():
        workload.run(args)
    runs: dict[str, list[float]] = {first: [], second: []}
    for round_index in range(args.runs):
        for name in (first, second) if round_index % 2 == 0 else (second, first):
            # A worker polls its queue (sched_yield) for a second after its last step; wait
            # until it sleeps so that it does not share the core with the next timed run.
            time.sleep(IDLE_S)
            runs[name].append(workloads[name].run(args))
    ratios = [a / b for a, b in zip(runs[first], runs[second], strict=True)]
    return {name: {"tokens_per_s": statistics.median(r), "runs": r} for name, r in runs.items()} | {
        "ratio": statistics.median(ratios),
        "round_ratios": ratios,
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
    worker_cpus = keep_off_worker_cores(llm)
    print(f"engine {path.name} polar={polar} eager={eager}: worker on CPUs {worker_cpus}")
    return llm


def keep_off_worker_cores(llm) -> list[int]:
    """Pin this process and the engine's scheduler process to the CPUs the worker does not use.

    vLLM binds the CPU worker to its cores and leaves the other processes free to run anywhere.
    On the 2-core development machine the scheduler process was busy (~90 % of a CPU) while
    serving, and the same engine served 11 tok/s in one lifetime and 28 in another.
    Returns the worker's CPUs.
    """
    import psutil

    scheduler = psutil.Process(llm.llm_engine.engine_core.resources.engine_manager.processes[0].pid)
    bound = [set(p.cpu_affinity()) for p in scheduler.children(recursive=True)]
    worker = set().union(*(cpus for cpus in bound if cpus != ALL_CPUS))
    spare = ALL_CPUS - worker
    if spare != ALL_CPUS and spare:
        pin(scheduler.pid, spare)
        pin(os.getpid(), spare)
    return sorted(worker)


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Set the CPU affinity of every thread of process ``pid``."""
    import psutil

    for thread in psutil.Process(pid).threads():
        os.sched_setaffinity(thread.id, cpus)


Side = tuple[Path, dict | None, bool, tuple[int, ...] | None]
"""An engine side: checkpoint, polar config (None = stock), eager, program of its requests."""


def pair(sides: dict[str, Side], args) -> dict:
    """Ratio of two engines' throughput (first side / second), alive together.

    Measured once per start order, each time on fresh engines, and the two ratios combined by
    geometric mean: on the development machine the engine started first served slower than
    the other while both were alive, whichever was which (3-4 % in the committed run).
    """
    orders: dict[str, dict] = {}
    for names in (list(sides), list(reversed(sides))):
        engines = {name: engine(*sides[name][:3]) for name in names}
        timed = rounds(
            {name: Workload(engines[name], [sides[name][3]], args.requests) for name in sides},
            args,
        )
        for llm in engines.values():
            close(llm)
        orders[f"{names[0]} started first"] = timed
    return orders | {"ratio": statistics.geometric_mean(o["ratio"] for o in orders.values())}


def close(llm) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=4, help="rounds per engine pair")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    parser.add_argument(
        "--only-mixed", action="store_true", help="only the mixed / uniform rows, one engine"
    )
    args = parser.parse_args()

    full = checkpoint(DEPTH)
    identity = tuple(range(DEPTH))
    comparisons: dict[str, dict] = {}

    def report(label: str, timed: dict) -> None:
        comparisons[label] = timed
        orders = [f"{k} {v['ratio']:.3f}" for k, v in timed.items() if k.endswith("started first")]
        detail = f" ({'; '.join(orders)})" if orders else ""
        print(f"{label:44s} ratio {timed['ratio']:.3f}{detail}", flush=True)

    polar = (full, {"max_steps": 30}, True)
    stock = (full, None, True)
    if not args.only_mixed:
        report(
            "stock / stock (noise floor)",
            pair({"stock": (*stock, None), "twin": (*stock, None)}, args),
        )
        for label, program, stock_side in (
            ("identity / stock eager (goal >= 0.95)", identity, stock),
            ("identity / stock compiled", identity, (full, None, False)),
            ("50% / stock 12 layers (goal >= 0.9)", HALF, (checkpoint(12), None, True)),
            ("75% / stock 18 layers (goal >= 0.9)", THREE_QUARTERS, (checkpoint(18), None, True)),
            ("125% / stock 30 layers (goal >= 0.9)", WITH_LOOP, (checkpoint(30), None, True)),
        ):
            report(label, pair({"polar": (*polar, program), "stock": (*stock_side, None)}, args))
    # Mixed and uniform batches run on one engine, so start order plays no part.
    llm = engine(*polar)
    searched = random.Random(0).sample(search_programs(30), 8 * args.requests)
    for label, programs, requests in (
        ("mixed / uniform identity (goal >= 0.85)", list(MIXED), args.requests),
        ("mixed / uniform identity, 8x requests", list(MIXED), 8 * args.requests),
        ("searched programs, all distinct / uniform", searched, 8 * args.requests),
    ):
        report(
            label,
            rounds(
                {
                    "mixed": Workload(llm, programs, requests),
                    "uniform": Workload(llm, [identity], requests),
                },
                args,
            ),
        )
    close(llm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "commit": code_version(),
                "settings": vars(args) | {"out": str(args.out)},
                "comparisons": comparisons,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

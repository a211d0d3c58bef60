"""Resident memory of the engine's worker over rounds of requests, stock vLLM against PoLar.

Each round generates 32 greedy tokens for 64 prompts; under PoLar every request runs a new
program (the identity with a block of two layers repeated at a random place).  Prints the
worker's resident set (MiB) after start and after every round; with ``--trim``, once more after
``malloc_trim(0)`` in the worker (memory the allocator kept rather than memory still in use).
Each round's wall time is recorded beside it; ``--out`` writes both as JSON.

    python benchmarks/worker_memory.py polar --rounds 8 [--trim] [--same-programs] [--out F]
    python benchmarks/worker_memory.py stock --rounds 8 [--out F]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import time
from pathlib import Path

import psutil


def worker_rss_mib() -> int:
    """Resident memory of this process's largest child (the engine's worker), MiB."""
    children = psutil.Process().children(recursive=True)
    return max(child.memory_info().rss for child in children) // 2**20


def malloc_trim(_worker=None) -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def new_program(rng: random.Random, depth: int) -> list[int]:
    program = list(range(depth))
    place = rng.randrange(2, depth - 4)
    program[place:place] = program[place - 2 : place]
    return program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["stock", "polar"])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--trim", action="store_true")
    parser.add_argument(
        "--same-programs", action="store_true", help="PoLar: draw the 64 programs once"
    )
    parser.add_argument("--out", type=Path, help="JSON of the resident sets and round times")
    args = parser.parse_args()
    if args.engine == "stock":
        os.environ["VLLM_PLUGINS"] = ""  # no plugin loaded: plain vLLM
    if args.trim:
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # to send malloc_trim to the worker
    from vllm import SamplingParams

    from polar.models import prepare
    from polar.search.records import code_version

    commit = code_version()  # before any result is written

    settings = dict(
        model=str(prepare(args.model)),
        dtype="float32",
        max_model_len=1024,
        max_num_seqs=128,
        block_size=32,
        seed=0,
        enforce_eager=True,
    )
    if args.engine == "stock":
        from vllm import LLM

        llm = LLM(**settings)
    else:
        from vllm_polar import LLM

        llm = LLM(**settings, additional_config={"polar": {"max_steps": 30}})
    depth = llm.llm_engine.model_config.hf_config.num_hidden_layers
    prompts = [f"Question {i}: what is {i} + {7 * i}? Answer:" for i in range(64)]
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    rng = random.Random(0)
    same = [new_program(rng, depth) for _ in prompts] if args.same_programs else None
    rows = [{"after": "start", "rss_mib": worker_rss_mib()}]
    print(f"{args.engine}: worker {rows[-1]['rss_mib']} MiB after start", flush=True)
    for round_ in range(args.rounds):
        start = time.perf_counter()
        if args.engine == "stock":
            llm.generate(prompts, params, use_tqdm=False)
        else:
            programs = same or [new_program(rng, depth) for _ in prompts]
            llm.generate(prompts, params, programs=programs, use_tqdm=False)
        seconds = time.perf_counter() - start
        rows.append({"after": f"round {round_}", "rss_mib": worker_rss_mib(), "seconds": seconds})
        print(
            f"{args.engine}: worker {rows[-1]['rss_mib']} MiB after round {round_} "
            f"({seconds:.1f} s)",
            flush=True,
        )
    if args.trim:
        llm.collective_rpc(malloc_trim)
        rows.append({"after": "malloc_trim", "rss_mib": worker_rss_mib()})
        print(f"{args.engine}: worker {rows[-1]['rss_mib']} MiB after malloc_trim", flush=True)
    if args.out:
        environment = {"MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "commit": commit,
                    "settings": vars(args) | {"out": str(args.out)} | environment,
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

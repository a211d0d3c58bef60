"""Host time the runner spends on routing per forward, in a real engine (CPU).

The 24-layer Qwen2.5-0.5B-shaped random checkpoint of ``throughput.py`` (float32, S = 30),
``--requests`` requests of 32 prompt tokens and ``--max-tokens`` greedy output tokens, each
request with its own program drawn from the programs the search evaluated (as in
``plan.py``).  The engine core and worker run in this process; every forward's
``plan_for_batch`` (plan kept or rebuilt, then the calls' attention metadata) and, inside it,
``with_call_attention`` (the metadata alone) are timed.  One warm-up generate, then ``--runs``
timed ones; medians over all their forwards.

    python benchmarks/step_host.py --out benchmarks/results/step_host.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the worker in this process, to time it
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from plan import search_programs  # noqa: E402  (benchmarks/plan.py, beside this script)
from throughput import checkpoint  # noqa: E402

from polar.search.records import code_version  # noqa: E402


def timed(module, name: str, into: list[float]):
    """Replace ``module.name`` by a wrapper that appends each call's seconds to ``into``."""
    work = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = work(*args, **kwargs)
        into.append(time.perf_counter() - start)
        return result

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step_host.json"))
    args = parser.parse_args()

    from vllm import LLM, SamplingParams

    import vllm_polar.patches.model_runner as model_runner
    import vllm_polar.runtime.runner as runner

    plans, metadata, calls = [], [], []
    timed(model_runner, "plan_for_batch", plans)
    timed(runner, "with_call_attention", metadata)
    count = runner.with_call_attention

    def counted(runner_, plan, inputs):
        calls.append(len(inputs.calls))
        return count(runner_, plan, inputs)

    runner.with_call_attention = counted
    llm = LLM(
        model=str(checkpoint(24)),
        dtype="float32",
        max_model_len=1024,
        enforce_eager=True,
        enable_prefix_caching=False,
        seed=0,
        additional_config={"polar": {"max_steps": 30}},
    )
    programs = random.Random(0).sample(search_programs(30), args.requests)
    params = [
        SamplingParams(
            max_tokens=args.max_tokens,
            ignore_eos=True,
            temperature=0,
            extra_args={"polar_program": list(program)},
        )
        for program in programs
    ]
    rng = random.Random(1)
    prompts = [
        {"prompt_token_ids": [rng.randrange(32000) for _ in range(32)]}
        for _ in range(args.requests)
    ]
    llm.generate(prompts, params, use_tqdm=False)
    for series in (plans, metadata, calls):
        series.clear()
    for _ in range(args.runs):
        llm.generate(prompts, params, use_tqdm=False)
    result = {
        "forwards": len(plans),
        "plan_for_batch_ms": 1e3 * statistics.median(plans),
        "with_call_attention_ms": 1e3 * statistics.median(metadata),
        "metadata_builds": statistics.median(calls),
    }
    result["per_build_us"] = 1e3 * result["with_call_attention_ms"] / result["metadata_builds"]
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"commit": code_version(), "settings": vars(args) | {"out": str(args.out)}}
            | {"results": result},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

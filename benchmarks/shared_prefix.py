"""pass@k under k programs on one prompt: what sharing the programs' common steps saves.

    VLLM_CPU_OMP_THREADS_BIND=0-1 python benchmarks/shared_prefix.py --prompt-len 600 \
        --out benchmarks/results/shared_prefix.json

One PoLar engine (SmolLM2-135M, float32, prefix caching off).  *Shared*: ``--prompts`` requests
with ``n = k``, child i running program i (``polar_programs``), so each prompt is prefilled
under k programs that agree on their first steps, as the predictor's top-k beams do.
*Apart*: the same k programs, each on a prompt of its own (k × ``--prompts`` distinct prompts of
the same length, ``n = 1``): the same work with nothing to share.  Greedy, ``--max-tokens``
output tokens, EOS ignored; the two workloads are timed in alternating rounds after a warm-up,
and the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def programs_for(depth: int) -> list[tuple[int, ...]]:
    """Five programs that part at different depths: the identity, two skips, a repeated layer
    and a looped block (beam-like: they agree on their first 40-90 % of steps)."""
    base = tuple(range(depth))
    at = [int(depth * f) for f in (0.4, 0.6, 0.75, 0.9)]
    return [
        base,
        base[: at[0]] + base[at[0] + 1 :],
        base[: at[1]] + base[at[1] + 2 :],
        base[: at[2] + 1] + base[at[2] :],
        base[: at[3]] + base[at[3] - 2 :],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=600)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shared_prefix.json"))
    args = parser.parse_args()

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from polar.models import resolve
    from polar.search.engine import default_slots, model_depth
    from vllm_polar.program import format_program

    path = resolve(args.model)
    depth = model_depth(path)
    programs = programs_for(depth)
    k = len(programs)
    llm = LLM(
        model=str(path),
        dtype="float32",
        max_model_len=args.prompt_len + args.max_tokens + 16,
        max_num_batched_tokens=max(8192, args.prompt_len * k * args.prompts),
        enable_prefix_caching=False,
        additional_config={"polar": {"max_steps": default_slots(depth)}},
        seed=0,
    )
    vocab = llm.llm_engine.model_config.get_vocab_size()

    def prompt(i: int) -> TokensPrompt:
        ids = [(7919 * i + 104729 * j) % (vocab - 200) + 100 for j in range(args.prompt_len)]
        return TokensPrompt(prompt_token_ids=ids)

    def params(n: int, extra: dict) -> SamplingParams:
        return SamplingParams(
            n=n, temperature=0, max_tokens=args.max_tokens, ignore_eos=True, extra_args=extra
        )

    shared = (
        [prompt(i) for i in range(args.prompts)],
        params(k, {"polar_programs": [list(p) for p in programs]}),
    )
    apart = (
        [prompt(args.prompts + i) for i in range(k * args.prompts)],
        [params(1, {"polar_program": list(programs[i % k])}) for i in range(k * args.prompts)],
    )

    def timed(workload) -> float:
        start = time.perf_counter()
        llm.generate(*workload, use_tqdm=False)
        return time.perf_counter() - start

    timed(shared), timed(apart)  # warm-up
    rounds = []
    for r in range(args.runs):
        order = (("shared", shared), ("apart", apart))[:: 1 if r % 2 == 0 else -1]
        rounds.append({name: timed(workload) for name, workload in order})
    llm.llm_engine.engine_core.shutdown()
    ratio = statistics.median(r["apart"] / r["shared"] for r in rounds)
    from polar.search.records import code_version

    result = {
        "programs": [format_program(p) for p in programs],
        "rounds": rounds,
        "shared_seconds": statistics.median(r["shared"] for r in rounds),
        "apart_seconds": statistics.median(r["apart"] for r in rounds),
        "speedup": ratio,
        "args": vars(args) | {"out": str(args.out), "depth": depth},
        "commit": code_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"pass@{k} on {args.prompts} prompts of {args.prompt_len} tokens: shared "
        f"{result['shared_seconds']:.1f} s, apart {result['apart_seconds']:.1f} s, "
        f"{ratio:.2f}x (median of {args.runs} rounds)"
    )


if __name__ == "__main__":
    main()

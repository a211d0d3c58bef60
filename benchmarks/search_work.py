"""Where a search round's time goes: its work and time against the uniform reference's.

    VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_CPU_KVCACHE_SPACE=3 python benchmarks/search_work.py \
        --out benchmarks/results/search_work.json

The batched search of ``benchmarks/search.py`` (same model and settings) runs to its end; the
(question, program) pairs of its second round of full waves are then sent again in one
``generate``, beside the uniform reference (as many distinct questions under the identity,
one ``generate``), each first with one output token (prefill alone) and then to the search's
token limit, every send on an empty prefix cache.  The engine runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that every forward's plan can be counted:

- *rows*: tokens times the steps each computes (a row copied from another with the same
  history and program prefix is not computed, and counted apart as *copied*);
- *layer runs*: (layer, token group) pairs a forward runs, which cost at least a read of the
  layer's weights however few their tokens;
- prompt tokens computed (not read from the prefix cache) and output tokens.

Seconds are those of the forwards (the model's layers and attention), split into prefill and
decode; the two ``generate`` times hold the scheduler and sampling too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from search import reference_questions, search_setup  # benchmarks/search.py, beside

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the worker in this process: plans visible


class ForwardCounter:
    """Wraps ``run_program`` to add up each forward's plan: rows, copies, layer runs, seconds."""

    def __init__(self) -> None:
        import vllm_polar.models.executor as executor

        self.counts: Counter = Counter()
        self.run_program = executor.run_program
        executor.run_program = self

    def __call__(self, layers, slots, plan, hidden, positions, qkv, post):
        start = time.perf_counter()
        result = self.run_program(layers, slots, plan, hidden, positions, qkv, post)
        seconds = time.perf_counter() - start
        tokens = hidden.shape[0]
        phase = "decode" if max_query_len() == 1 else "prefill"
        counts = self.counts
        counts[f"{phase}_forwards"] += 1
        counts[f"{phase}_seconds"] += seconds
        counts[f"{phase}_tokens"] += tokens
        for round_ in plan.rounds:
            for group in round_.groups:
                rows = tokens if group.tokens is None else group.tokens.stop - group.tokens.start
                counts[f"{phase}_layer_runs"] += 1
                counts[f"{phase}_rows"] += rows
                if group.copies is not None:
                    counts[f"{phase}_copied_rows"] += group.copies[0].stop - group.copies[0].start
        return result


def max_query_len() -> int:
    """The current forward's longest query (1: every request decoding)."""
    from vllm.forward_context import get_forward_context

    return next(iter(get_forward_context().attn_metadata.values())).max_query_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="arith")
    parser.add_argument("--per-level", type=int, default=6)
    parser.add_argument("--simulations", type=int, default=33)
    parser.add_argument("--wave", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_work.json"))
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")
    counter = ForwardCounter()

    from polar.search.engine import EngineEvaluator, start_engine, stop_engine
    from polar.search.records import code_version
    from polar.search.run import search_questions, select_examples
    from vllm_polar.program import identity

    path, depth, slots, settings = search_setup(args.model, args.simulations, args.wave)
    examples = select_examples(args.task, "train", per_level=args.per_level)
    reference = reference_questions(args.task, "train", examples, args.wave)
    round_size = len(reference)
    llm = start_engine(path, slots)
    try:
        evaluator = EngineEvaluator(llm, examples)
        full_rounds: list[list] = []

        class Recorder:
            results = evaluator.results

            def __call__(self, pairs):
                if len(pairs) == round_size:
                    full_rounds.append(list(pairs))
                return evaluator(pairs)

        with tempfile.TemporaryDirectory(prefix="search-work-") as tmp:
            llm.reset_prefix_cache()
            search_questions(
                examples,
                Recorder(),
                settings,
                Path(tmp) / "rows.jsonl",
                max_active=256,
                show_progress=False,
            )
        pairs = full_rounds[1]
        reference_evaluator = EngineEvaluator(llm, reference)
        sends = {
            "search round": (evaluator, [(q, p, 1, 0.0) for q, p in pairs]),
            "uniform reference": (
                reference_evaluator,
                [(e.id, identity(depth), 1, 0.0) for e in reference],
            ),
        }
        result: dict = {}
        for max_tokens in (1, evaluator.max_new_tokens):
            for name, (send_evaluator, requests) in sends.items():
                send_evaluator.max_new_tokens = max_tokens
                llm.reset_prefix_cache()
                counter.counts.clear()
                start = time.perf_counter()
                outputs = send_evaluator.generate(requests)
                seconds = time.perf_counter() - start
                key = f"{name}, {'prefill' if max_tokens == 1 else 'whole'}"
                result[key] = {
                    "requests": len(requests),
                    "generate_seconds": seconds,
                    "prompt_tokens": sum(len(o.prompt_token_ids) for o in outputs),
                    "prompt_tokens_cached": sum(o.num_cached_tokens or 0 for o in outputs),
                    "output_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
                    "mean_program_steps": sum(len(r[1]) for r in requests) / len(requests),
                    **dict(counter.counts),
                }
    finally:
        stop_engine(llm)
    result["args"] = vars(args) | {"out": str(args.out), "depth": depth, "slots": slots}
    result["commit"] = code_version()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_summary(result)


def print_summary(result: dict) -> None:
    print("| send | seconds | prompt tokens computed | output tokens | rows | layer runs |")
    print("|---|---|---|---|---|---|")
    for key, r in result.items():
        if not isinstance(r, dict) or "requests" not in r:
            continue
        rows = r.get("prefill_rows", 0) + r.get("decode_rows", 0)
        runs = r.get("prefill_layer_runs", 0) + r.get("decode_layer_runs", 0)
        print(
            f"| {key} | {r['generate_seconds']:.1f} | "
            f"{r['prompt_tokens'] - r['prompt_tokens_cached']} | {r['output_tokens']} | "
            f"{rows} | {runs} |"
        )


if __name__ == "__main__":
    main()

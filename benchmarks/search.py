"""Simulations per second of the batched program search vs one program at a time.

    python benchmarks/search.py --model smollm2-135m --task arith --per-level 4 \
        --simulations 16 --sequential-questions 2 --out results/search/benchmark.json

One PoLar engine serves both runs. *Batched*: every active question's wave goes to the engine in
one ``generate`` call (the search as ``polar search`` runs it). *One at a time*: the same search
(same settings, seeds and cache) on the first ``--sequential-questions`` questions, each program
sent alone. Both start with an empty cache; the rows the two runs produce for the shared
questions are compared (same rewards = batching changed no answer).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def timed_search(examples, evaluate, settings, out: Path, max_active: int) -> dict:
    from polar.search.run import search_questions

    start = time.perf_counter()
    progress = search_questions(examples, evaluate, settings, out, max_active=max_active)
    seconds = time.perf_counter() - start
    return {
        "questions": len(examples),
        "simulations": progress.simulations,
        "evaluations": progress.evaluations,
        "seconds": seconds,
        "simulations_per_s": progress.simulations / seconds,
        "evaluations_per_s": progress.evaluations / seconds,
    }


def rows_by_id(path: Path) -> dict[str, tuple]:
    from polar.search.records import read_rows

    return {r["id"]: (r["valid_programs"], r["invalid_programs"]) for r in read_rows(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="arith")
    parser.add_argument("--split", default="train")
    parser.add_argument("--per-level", type=int, default=4)
    parser.add_argument("--simulations", type=int, default=16)
    parser.add_argument("--wave", type=int, default=8)
    parser.add_argument("--sequential-questions", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/search/benchmark.json"))
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    from polar.models import resolve
    from polar.search.engine import (
        EngineEvaluator,
        default_slots,
        model_depth,
        start_engine,
        stop_engine,
    )
    from polar.search.mcts import MCTSConfig
    from polar.search.run import SearchSettings, select_examples

    path = resolve(args.model)
    depth = model_depth(path)
    slots = default_slots(depth)
    settings = SearchSettings(
        depth=depth,
        min_steps=depth // 2,
        max_steps=slots,
        mcts=MCTSConfig(simulations=args.simulations, wave=args.wave),
    )
    examples = select_examples(args.task, args.split, per_level=args.per_level)
    few = examples[: args.sequential_questions]
    llm = start_engine(path, slots)
    try:
        with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
            batched_out, single_out = Path(tmp) / "batched.jsonl", Path(tmp) / "single.jsonl"
            batched = EngineEvaluator(llm, examples)
            result = {"batched": timed_search(examples, batched, settings, batched_out, 256)}
            single = EngineEvaluator(llm, few)

            def one_at_a_time(pairs):
                return [single([pair])[0] for pair in pairs]

            result["one_at_a_time"] = timed_search(few, one_at_a_time, settings, single_out, 1)
            batched_rows, single_rows = rows_by_id(batched_out), rows_by_id(single_out)
            result["same_rows_on_shared_questions"] = all(
                batched_rows[k] == v for k, v in single_rows.items()
            )
    finally:
        stop_engine(llm)
    result["speedup_simulations_per_s"] = (
        result["batched"]["simulations_per_s"] / result["one_at_a_time"]["simulations_per_s"]
    )
    result["args"] = vars(args) | {"out": str(args.out), "depth": depth, "slots": slots}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| run | questions | simulations | engine evaluations | seconds | simulations/s |")
    print("|---|---|---|---|---|---|")
    for name in ("batched", "one_at_a_time"):
        r = result[name]
        print(
            f"| {name} | {r['questions']} | {r['simulations']} | {r['evaluations']} | "
            f"{r['seconds']:.0f} | {r['simulations_per_s']:.2f} |"
        )
    print(
        f"speedup: {result['speedup_simulations_per_s']:.1f}x; "
        f"same rows: {result['same_rows_on_shared_questions']}"
    )


if __name__ == "__main__":
    main()

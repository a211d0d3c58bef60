"""Simulations per second of the batched program search vs one program at a time.

    python benchmarks/search.py --model smollm2-135m --task arith --per-level 4 \
        --simulations 16 --sequential-questions 2 --out results/search/benchmark.json

One PoLar engine serves every run. *Batched*: the search as ``polar search`` runs it — every
active question's wave goes to the engine in one ``generate`` call. *Batched + reuse*: the same,
each new program first checked against its question's known completion (``EngineEvaluator(
reuse=True)``). *One at a time*: the same search (same settings and seeds) on the first
``--sequential-questions`` questions, each program decoded alone. Every run starts with empty
caches; the rows of the shared questions are compared (same rewards = neither batching nor
reuse changed an answer).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict
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


def one_at_a_time(evaluator):
    """``evaluate`` that sends each pair to the engine on its own."""

    def evaluate(pairs):
        return [evaluator([pair])[0] for pair in pairs]

    return evaluate


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
            runs = {
                "batched": (examples, EngineEvaluator(llm, examples), 256),
                "batched_reuse": (examples, EngineEvaluator(llm, examples, reuse=True), 256),
                "one_at_a_time": (few, EngineEvaluator(llm, few), 1),
            }
            result, rows = {}, {}
            for name, (questions, evaluator, max_active) in runs.items():
                evaluate = evaluator if max_active > 1 else one_at_a_time(evaluator)
                out = Path(tmp) / f"{name}.jsonl"
                result[name] = timed_search(questions, evaluate, settings, out, max_active)
                result[name]["reuse"] = asdict(evaluator.stats)
                rows[name] = rows_by_id(out)
            result["same_rows_on_shared_questions"] = all(
                rows[name][k] == v
                for name in ("batched", "batched_reuse")
                for k, v in rows["one_at_a_time"].items()
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
    for name in ("batched", "batched_reuse", "one_at_a_time"):
        r = result[name]
        print(
            f"| {name} | {r['questions']} | {r['simulations']} | {r['evaluations']} | "
            f"{r['seconds']:.0f} | {r['simulations_per_s']:.2f} |"
        )
    print(f"reuse: {result['batched_reuse']['reuse']}")
    print(
        f"speedup: {result['speedup_simulations_per_s']:.1f}x; "
        f"same rows: {result['same_rows_on_shared_questions']}"
    )


if __name__ == "__main__":
    main()

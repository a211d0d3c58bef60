"""Simulations per second of the batched program search vs one program at a time.

    VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_CPU_KVCACHE_SPACE=3 python benchmarks/search.py \
        --model smollm2-135m --task arith --per-level 6 --simulations 33 --wave 8 \
        --sequential-questions 2 --runs 3 --out results/search/benchmark.json

One PoLar engine serves every run. *Batched*: the search as ``polar search`` runs it — every
active question's wave goes to the engine in one ``generate`` call, every completion stopped
after its first closed box. *One at a time*: the same search (same settings and seeds) on the
first ``--sequential-questions`` questions, each program decoded alone. Every run starts with
empty caches, the engine's prefix cache included; the rows of the shared questions are compared
(same rewards = batching changed no answer).

*Uniform reference*: what batching alone gives on this machine for requests of this kind — one
``generate`` of as many distinct questions as a search round holds (questions × wave), every one
under the identity program, against the first ``--sequential-questions`` × 4 of them one at a
time. Its ratio bounds what the search can reach where a round's programs all differ; the
search's batched rate over the reference's batched rate says what mixing programs costs.

``--runs`` repeats every measurement; figures are medians (ratios: median of the per-run ratios).
``--arms batched`` times the batched search and the uniform reference alone;
``--max-num-seqs`` sets the engine's batch (default: the search's own, ``ENGINE_OPTIONS``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path


def timed_search(examples, evaluator, settings, out: Path, max_active: int) -> dict:
    from polar.search.run import search_questions

    start = time.perf_counter()
    progress = search_questions(
        examples, evaluator, settings, out, max_active=max_active, show_progress=False
    )
    seconds = time.perf_counter() - start
    return {
        "questions": len(examples),
        "simulations": progress.simulations,
        "evaluations": progress.evaluations,
        "seconds": seconds,
        "simulations_per_s": progress.simulations / seconds,
    }


class OneAtATime:
    """An evaluator that sends each pair to the engine on its own."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.results = evaluator.results

    def __call__(self, pairs):
        return [self.evaluator([pair])[0] for pair in pairs]


def rows_by_id(path: Path) -> dict[str, tuple]:
    from polar.search.records import read_rows

    return {r["id"]: (r["valid_programs"], r["invalid_programs"]) for r in read_rows(path)}


def uniform_reference(llm, examples, depth: int, sequential: int) -> dict:
    """Identity-program requests on distinct questions: one batched ``generate`` vs one at a
    time on the first ``sequential`` (greedy, the search's prompt and token limit)."""
    from polar.search.engine import EngineEvaluator
    from vllm_polar.program import identity

    pairs = [(e.id, identity(depth)) for e in examples]
    evaluator = EngineEvaluator(llm, examples)
    start = time.perf_counter()
    evaluator(pairs)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for pair in pairs[:sequential]:
        evaluator([pair])
    alone = time.perf_counter() - start
    return {
        "requests": len(pairs),
        "batched_requests_per_s": len(pairs) / batched,
        "one_at_a_time_requests": sequential,
        "one_at_a_time_requests_per_s": sequential / alone,
    }


def search_setup(model: str, simulations: int, wave: int):
    """The model's folder, its depth D and slot count S, and the search settings every arm
    runs (step budget [D // 2, S])."""
    from polar.models import resolve
    from polar.search.engine import default_slots, model_depth
    from polar.search.mcts import MCTSConfig
    from polar.search.run import SearchSettings

    path = resolve(model)
    depth = model_depth(path)
    slots = default_slots(depth)
    settings = SearchSettings(
        depth=depth,
        min_steps=depth // 2,
        max_steps=slots,
        mcts=MCTSConfig(simulations=simulations, wave=wave),
    )
    return path, depth, slots, settings


def reference_questions(task: str, split: str, examples: list, wave: int) -> list:
    """As many distinct questions as a search round of ``examples`` holds (questions × wave),
    spread over the levels like ``examples``: the uniform reference's questions."""
    from polar.search.run import select_examples

    round_size = len(examples) * wave
    levels = len({e.metadata.get("level") for e in examples})
    per_level = math.ceil(round_size / levels)
    return select_examples(task, split, per_level=per_level)[:round_size]


def median_run(runs: list[dict]) -> dict:
    """Per numeric field, the median over runs (counts are equal in every run)."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="arith")
    parser.add_argument("--split", default="train")
    parser.add_argument("--per-level", type=int, default=6)
    parser.add_argument("--simulations", type=int, default=33)
    parser.add_argument("--wave", type=int, default=8)
    parser.add_argument("--sequential-questions", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--arms", choices=["all", "batched"], default="all")
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/search/benchmark.json"))
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")

    from polar.search.engine import ENGINE_OPTIONS, EngineEvaluator, start_engine, stop_engine
    from polar.search.run import select_examples

    path, depth, slots, settings = search_setup(args.model, args.simulations, args.wave)
    examples = select_examples(args.task, args.split, per_level=args.per_level)
    few = examples[: args.sequential_questions]
    reference_examples = reference_questions(args.task, args.split, examples, args.wave)
    arms = {  # name: (questions, questions in flight, stop after the box)
        "batched": (examples, 256, True),
        "batched_without_stop": (examples, 256, False),
        "one_at_a_time": (few, 1, True),
    }
    if args.arms == "batched":
        arms = {"batched": arms["batched"]}
    max_num_seqs = args.max_num_seqs or ENGINE_OPTIONS["max_num_seqs"]
    timings: dict[str, list[dict]] = {name: [] for name in [*arms, "uniform_reference"]}
    rows = {}
    llm = start_engine(path, slots, max_num_seqs=max_num_seqs)
    try:
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
                for name, (questions, max_active, stop) in arms.items():
                    evaluator = EngineEvaluator(llm, questions, stop_after_boxed=stop)
                    if max_active == 1:
                        evaluator = OneAtATime(evaluator)
                    out = Path(tmp) / f"{name}.jsonl"
                    llm.reset_prefix_cache()
                    timings[name].append(
                        timed_search(questions, evaluator, settings, out, max_active)
                    )
                    rows[name] = rows_by_id(out)
            llm.reset_prefix_cache()
            timings["uniform_reference"].append(
                uniform_reference(llm, reference_examples, depth, 4 * args.sequential_questions)
            )
    finally:
        stop_engine(llm)
    result = {name: median_run(runs) | {"runs": runs} for name, runs in timings.items()}
    if args.arms == "all":
        result["same_rows_on_shared_questions"] = all(
            rows[name][k] == v for name in arms for k, v in rows["one_at_a_time"].items()
        )
        result["speedup_simulations_per_s"] = statistics.median(
            b["simulations_per_s"] / s["simulations_per_s"]
            for b, s in zip(timings["batched"], timings["one_at_a_time"])
        )
        result["stop_speedup"] = statistics.median(
            b["simulations_per_s"] / n["simulations_per_s"]
            for b, n in zip(timings["batched"], timings["batched_without_stop"])
        )
    result["uniform_reference_speedup"] = statistics.median(
        r["batched_requests_per_s"] / r["one_at_a_time_requests_per_s"]
        for r in timings["uniform_reference"]
    )
    result["batched_share_of_uniform_rate"] = statistics.median(
        b["simulations_per_s"] / r["batched_requests_per_s"]
        for b, r in zip(timings["batched"], timings["uniform_reference"])
    )
    result["args"] = vars(args) | {
        "out": str(args.out),
        "depth": depth,
        "slots": slots,
        "max_num_seqs": max_num_seqs,
    }
    from polar.search.records import code_version

    result["commit"] = code_version()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_summary(result, arms)


def print_summary(result: dict, arms: dict) -> None:
    print("| run | questions | simulations | seconds | simulations/s |")
    print("|---|---|---|---|---|")
    for name in arms:
        r = result[name]
        print(
            f"| {name} | {r['questions']:.0f} | {r['simulations']:.0f} | {r['seconds']:.0f} | "
            f"{r['simulations_per_s']:.2f} |"
        )
    ref = result["uniform_reference"]
    print(
        f"uniform reference: {ref['requests']:.0f} identity requests batched "
        f"{ref['batched_requests_per_s']:.2f}/s, one at a time "
        f"{ref['one_at_a_time_requests_per_s']:.2f}/s "
        f"({result['uniform_reference_speedup']:.1f}x)"
    )
    print(f"batched search at {result['batched_share_of_uniform_rate']:.2f} of the uniform rate")
    if "speedup_simulations_per_s" in result:
        print(
            f"batched / one at a time: {result['speedup_simulations_per_s']:.1f}x; same rows: "
            f"{result['same_rows_on_shared_questions']}; stopping after the box: "
            f"{result['stop_speedup']:.2f}x"
        )


if __name__ == "__main__":
    main()

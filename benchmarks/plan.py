"""Host cost of the routing plan per decode step, without an engine.

Batches of R requests decoding one token each, every request with its own program:

- ``search``: programs the MCTS search evaluated for Qwen2.5-Coder-0.5B-Instruct on ``arith``
  (D = 24, S = 30; ``results/search/qwen2.5-coder-0.5b-arith/supervision*.jsonl``, valid and
  invalid alike: the space a predictor's beam draws from), distinct, drawn at random;
- ``edits``: a 36-layer model (S = 45), the identity with 1-3 edits per program, each the skip
  or the repeat of a block of 1-4 layers, drawn fresh every call.

Per batch size, medians of ``--runs``:

- *fresh*: ``build_plan`` on a fresh draw, every program new to the engine;
- *changed*: ``build_plan`` on the same batch with one request replaced by a new one, the
  others' programs known to the engine's program table: what a decode step pays when a
  request finished and another joined;
- *steady*: a decode step with the batch unchanged: the runner's check that the last plan
  still holds (same requests, one token further), after which it only rebuilds the calls'
  metadata;
- the plan's rounds, layer runs, attention calls (one per round) and metadata builds (one per
  call that is not over the whole batch on one slot).
Also the *routing launches* of the plan: the tensor ops the executor adds around the layers and
attention calls of one forward (gathers, scatters, joins; views and allocations aside), each a
kernel launch on a GPU, counted by running the executor with stand-ins that do no work.

    python benchmarks/plan.py --out benchmarks/results/plan.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from polar.search.records import code_version
from vllm_polar.config import PolarConfig
from vllm_polar.models import executor
from vllm_polar.runtime.plan import DEFAULT_COSTS, Costs, Plan, ProgramTable, build_plan
from vllm_polar.runtime.runner import Planner

SEARCH = Path("results/search/qwen2.5-coder-0.5b-arith")


def search_programs(num_slots: int) -> list[tuple[int, ...]]:
    programs = set()
    for space in ("", ".skip", ".loop"):
        for line in (SEARCH / f"supervision{space}.jsonl").read_text().splitlines():
            row = json.loads(line)
            for program in row["valid_programs"] + row["invalid_programs"]:
                if len(program) <= num_slots:
                    programs.add(tuple(program))
    return sorted(programs)


def edited(rng: random.Random, depth: int, num_slots: int) -> tuple[int, ...]:
    """The identity with 1-3 edits, each skipping or repeating a block of 1-4 layers."""
    while True:
        program = list(range(depth))
        for _ in range(rng.randint(1, 3)):
            size = rng.randint(1, 4)
            start = rng.randrange(0, len(program) - size)
            block = program[start : start + size]
            if rng.random() < 0.5:
                del program[start : start + size]
            else:
                program[start + size : start + size] = block
        if 0 < len(program) <= num_slots:
            return tuple(program)


def counts(plan: Plan) -> dict[str, int]:
    return {
        "rounds": len(plan.rounds),
        "layer_runs": sum(len(r.groups) for r in plan.rounds),
        "attention_calls": len(plan.rounds),
        "metadata_builds": len(plan.partial_calls()),
    }


class Launches(TorchDispatchMode):
    """Counts the tensor ops dispatched under it that would launch a kernel on a GPU."""

    ALLOCATIONS = {torch.ops.aten.empty, torch.ops.aten.empty_like, torch.ops.aten.new_empty}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket not in self.ALLOCATIONS:
            self.count += 1
        return func(*args, **(kwargs or {}))


class StandIn(torch.nn.Module):
    """A layer or slot attention that does no tensor work."""

    def input_layernorm(self, hidden: torch.Tensor, residual: torch.Tensor):
        return hidden, residual

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return q


def routing_launches(plan: Plan, num_tokens: int, depth: int, num_slots: int) -> int:
    """Launches of the executor's own ops in one forward of ``plan``."""
    layers = torch.nn.ModuleList(StandIn() for _ in range(depth))
    slots = torch.nn.ModuleList(StandIn() for _ in range(num_slots))
    calls = {call.tokens.start: None for call in plan.partial_calls()}
    attend, executor.attend = executor.attend, lambda slot, attention, q, k, v: q
    try:
        with Launches() as launches:
            executor.run_program(
                layers,
                slots,
                dataclasses.replace(plan, call_attention=calls),
                torch.zeros(num_tokens, 8),
                torch.zeros(num_tokens, dtype=torch.long),
                lambda layer, x, positions: (x, x, x),
                lambda layer, residual, out: (out, residual),
            )
    finally:
        executor.attend = attend
    return launches.count


def measure(draw, requests: int, depth: int, num_slots: int, costs: Costs, runs: int) -> dict:
    qsl = np.arange(requests + 1)
    device = torch.device("cpu")
    fresh, changed, shapes = [], [], []
    table = ProgramTable(depth, num_slots)
    for _ in range(runs):
        programs = draw(requests)
        start = time.perf_counter()
        plan = build_plan(programs, qsl, device, depth, num_slots, None, costs)
        fresh.append(time.perf_counter() - start)
        shapes.append(
            counts(plan) | {"routing_launches": routing_launches(plan, requests, depth, num_slots)}
        )
        table.lookup(programs)  # the engine planned this batch at an earlier step
        programs = [*programs[1:], *draw(1)]  # since then one request left, another joined
        start = time.perf_counter()
        build_plan(programs, qsl, device, depth, num_slots, None, costs, table)
        changed.append(time.perf_counter() - start)
    planner = Planner(PolarConfig(num_layers=depth, max_steps=num_slots), costs, plan=plan)
    planner.req_ids = [f"request-{i}" for i in range(requests)]
    planner.query_lens = np.ones(requests, np.int64)
    planner.computed = np.full(requests, 100, np.int64)
    steady = []
    for step in range(1, runs + 1):
        req_ids = list(planner.req_ids)
        computed = np.full(requests, 100 + step, np.int64)
        start = time.perf_counter()
        assert planner.reusable(req_ids, np.diff(qsl), computed)
        planner.computed = computed
        steady.append(time.perf_counter() - start)
    return {
        "requests": requests,
        "build_plan_ms": 1e3 * statistics.median(fresh),
        "changed_batch_ms": 1e3 * statistics.median(changed),
        "steady_step_ms": 1e3 * statistics.median(steady),
        **{k: statistics.median(s[k] for s in shapes) for k in shapes[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--costs",
        type=float,
        nargs=3,
        metavar=("LAYER_RUN", "CALL", "BUILD"),
        default=[DEFAULT_COSTS.layer_run, DEFAULT_COSTS.call, DEFAULT_COSTS.build],
        help="seconds; the engine measures its own at its first step",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/plan.json"))
    args = parser.parse_args()
    costs = Costs(*args.costs)
    rng = random.Random(args.seed)
    pool = search_programs(30)
    # The engine core freezes its start-up heap (vLLM's freeze_gc_heap), so that the cyclic
    # collector does not walk the imported modules' objects during steps; likewise here.
    gc.collect()
    gc.freeze()
    sources = {
        "search (D=24, S=30)": (24, 30, lambda n: rng.sample(pool, n)),
        "edits (D=36, S=45)": (36, 45, lambda n: [edited(rng, 36, 45) for _ in range(n)]),
    }
    results = {}
    print(f"{len(pool)} distinct searched programs; costs {costs}")
    header = (
        "source               requests  fresh ms  changed ms  steady ms  rounds  layer runs  calls"
        "  builds  routing launches"
    )
    print(header)
    for name, (depth, num_slots, draw) in sources.items():
        rows = []
        for requests in args.requests:
            row = measure(
                draw,
                min(requests, len(pool)) if name.startswith("search") else requests,
                depth,
                num_slots,
                costs,
                args.runs,
            )
            rows.append(row)
            print(
                f"{name:20s} {row['requests']:8d} {row['build_plan_ms']:9.2f} "
                f"{row['changed_batch_ms']:11.2f} {row['steady_step_ms']:10.4f} "
                f"{row['rounds']:7.0f} {row['layer_runs']:11.0f} "
                f"{row['attention_calls']:6.0f} {row['metadata_builds']:7.0f} "
                f"{row['routing_launches']:17.0f}",
                flush=True,
            )
        results[name] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "commit": code_version(),
                "settings": vars(args) | {"out": str(args.out)},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Same-budget controls for the search: what as many tries give without guidance.

For a question whose search in a space evaluated N distinct programs (the identity among them):

- **Base sampling**: N completions of the identity program sampled at each temperature of
  ``TEMPERATURES`` (the statistics report the best temperature; the engine's seed seeds them).
- **Random programs**: the identity and N - 1 random walks from it in the same space, one per
  program the search reached, each walk as many actions long as that program is deep in the
  search tree (uniform over the space's actions at every step; distinct programs).

One row per question in ``<out stem>.controls.jsonl``::

    {"id": str, "level": int | null, "answer": str, "counts": {space: N},
     "sampling": {"0.3": [graded, ...], ...},           # max N completions per temperature
     "random": {space: [{"program": text, "depth": int, **graded}, ...]},
     "settings": {...}, "run": {...}}

``graded`` is a completion's :data:`polar.search.engine.Graded` record; pass@n of a control is
read from its first n entries, so every budget of the oracle curve has its control.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from polar.search.engine import EngineEvaluator
from polar.search.records import Graded, append_row, read_rows, resume
from polar.search.space import SearchSpace
from polar.tasks import Example
from vllm_polar.program import Program, format_program, identity

TEMPERATURES = (0.3, 0.7, 1.0)
WALK_RETRIES = 50
"""Draws of a walk before a question settles for fewer random programs than N."""
CHUNK = 16
"""Questions whose controls go to the engine together (then their rows are written)."""


def controls_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.controls{out.suffix}")


def random_walk(space: SearchSpace, root: Program, actions: int, rng: random.Random) -> Program:
    """``actions`` uniformly drawn actions of ``space`` from ``root`` (fewer at a dead end)."""
    program = root
    for _ in range(actions):
        children = space.children(program)
        if not children:
            break
        program = rng.choice(children)
    return program


def random_programs(
    space: SearchSpace, root: Program, depths: Sequence[int], rng: random.Random
) -> list[tuple[Program, int]]:
    """(program, depth): the root, then one distinct random walk per entry of ``depths``."""
    chosen: list[tuple[Program, int]] = [(root, 0)]
    seen = {root}
    for depth in depths:
        for _ in range(WALK_RETRIES):
            program = random_walk(space, root, depth, rng)
            if program not in seen:
                seen.add(program)
                chosen.append((program, depth))
                break
    return chosen


def control_settings(settings, temperatures: Sequence[float]) -> dict[str, Any]:
    return {"temperatures": list(temperatures), "search": settings.record("controls")}


def run_controls(
    examples: Sequence[Example],
    evaluator: EngineEvaluator,
    settings,
    search_rows: dict[str, list[dict[str, Any]]],
    out: Path,
    temperatures: Sequence[float] = TEMPERATURES,
    run: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> None:
    """Controls of every question searched in all spaces and not yet in the controls file."""
    path = controls_path(out)
    recorded = control_settings(settings, temperatures)
    done = {row["id"] for row in resume(path, recorded)}
    rows_of = {space: {row["id"]: row for row in rows} for space, rows in search_rows.items()}
    todo = [e for e in examples if e.id not in done and all(e.id in rows_of[s] for s in rows_of)]
    bar = tqdm(
        total=len(todo), desc="controls", unit="q", file=sys.stderr, disable=not show_progress
    )
    root = identity(settings.depth)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        counts = {e.id: {s: len(rows_of[s][e.id]["evaluations"]) for s in rows_of} for e in chunk}
        most = {q: max(n.values()) for q, n in counts.items()}
        samples = {t: evaluator.sample(most, t) for t in temperatures}
        walks = {
            (e.id, space): random_programs(
                settings.space(space),
                root,
                [ev["depth"] for ev in rows_of[space][e.id]["evaluations"] if ev["depth"] > 0],
                random.Random(f"{settings.seed}/random/{space}/{e.id}"),
            )
            for e in chunk
            for space in rows_of
        }
        pairs = dict.fromkeys((q, p) for (q, _), drawn in walks.items() for p, _ in drawn)
        todo_pairs = [pair for pair in pairs if pair[1] not in evaluator.results[pair[0]]]
        evaluator(todo_pairs)
        for e in chunk:
            append_row(
                path,
                {
                    "id": e.id,
                    "level": e.metadata.get("level"),
                    "answer": e.answer,
                    "counts": counts[e.id],
                    "sampling": {str(t): samples[t].get(e.id, []) for t in temperatures},
                    "random": {
                        space: [
                            random_record(p, depth, evaluator.results[e.id][p])
                            for p, depth in walks[(e.id, space)]
                        ]
                        for space in rows_of
                    },
                    "settings": recorded,
                    "run": run or {},
                },
            )
        bar.update(len(chunk))
    bar.close()


def random_record(program: Program, depth: int, graded: Graded) -> dict[str, Any]:
    return {"program": format_program(program), "depth": depth, **graded}


def read_controls(out: Path) -> list[dict[str, Any]]:
    return read_rows(controls_path(out))

"""``search_stats.json``: the paper's oracle table and findings, from finished output rows.

Rows are grouped by space (``skip_loop``, ``skip``, ``loop``); every function takes the rows of
the spaces searched and the model depth D. A question is *solved* in a space when its search
found at least one correct program (the identity counts, so the oracle is never below Base).
``strict`` grading decides (``polar.answers``); the oracle tables and the controls are also
given under ``lenient`` grading, from the completions the rows store.

The controls (:mod:`polar.search.controls`) answer whether the search beats as many tries
without guidance: *search gain* = oracle − the best control at the same number of tries.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import combinations
from typing import Any

from polar.answers import GRADINGS, normalize
from polar.metrics import mcnemar
from polar.predictor.segments import Op, to_segments
from vllm_polar.program import identity

Rows = list[dict[str, Any]]
NEAR = 10
"""A near decoy differs from the gold answer by at most this much."""
CURVE_BUDGETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
"""Simulation counts of the oracle curve (up to the run's budget, which is always added)."""


def level_keys(rows: Rows) -> list[str]:
    """The levels of ``rows`` as table keys, then ``all``."""
    return [*(str(lv) for lv in sorted({row["level"] for row in rows}, key=str)), "all"]


def at_level(rows: Rows, level: str) -> Rows:
    return [r for r in rows if level == "all" or str(r["level"]) == level]


def solved(row: dict[str, Any], grading: str = "strict", simulations: int | None = None) -> bool:
    """Whether some program the row's search reached by ``simulations`` is correct."""
    return any(
        e[grading]
        for e in row["evaluations"]
        if simulations is None or e["simulation"] <= simulations
    )


def base_correct(row: dict[str, Any], grading: str = "strict") -> bool:
    """The identity's grade (the search's first evaluation)."""
    return bool(row["evaluations"][0][grading])


def oracle_table(rows_by_space: dict[str, Rows], grading: str = "strict") -> dict[str, Any]:
    """Per level (and ``all``): n, Base accuracy and each space's oracle accuracy."""
    base_rows = next(iter(rows_by_space.values()))
    table = {}
    for level in level_keys(base_rows):
        entry: dict[str, Any] = {"n": len(at_level(base_rows, level))}
        entry["base"] = share(at_level(base_rows, level), lambda r: base_correct(r, grading))
        for space, rows in rows_by_space.items():
            entry[space] = share(at_level(rows, level), lambda r: solved(r, grading))
        table[level] = entry
    return table


def head_to_head(rows_by_space: dict[str, Rows]) -> dict[str, dict[str, Any]]:
    """Every two spaces compared on the questions both searched (:func:`mcnemar`), keyed
    ``"<a>_vs_<b>"`` in the order the spaces were searched."""
    solved_by = {space: {r["id"]: solved(r) for r in rows} for space, rows in rows_by_space.items()}
    return {
        f"{a}_vs_{b}": {"a": a, "b": b, **mcnemar(solved_by[a], solved_by[b])}
        for a, b in combinations(solved_by, 2)
    }


def control_hits(
    control_of: dict[str, dict[str, Any]],
    tries: dict[str, int],
    space: str,
    kind: str,
    grading: str,
) -> dict[str, bool]:
    """Per question of ``tries``: whether its control ``kind`` (``random`` or a sampling
    temperature) is correct within ``tries[question]`` tries."""
    hits = {}
    for question, count in tries.items():
        control = control_of[question]
        entries = control["random"][space] if kind == "random" else control["sampling"][kind]
        hits[question] = any(e[grading] for e in entries[:count])
    return hits


def rate(hits: dict[str, bool]) -> float | None:
    return share_of(sum(hits.values()), len(hits))


def control_table(
    rows_by_space: dict[str, Rows], controls: Rows, grading: str = "strict"
) -> dict[str, Any]:
    """Per space and level: the oracle beside base sampling (each temperature, and the best) and
    random programs at the same number of tries, the search gain, and paired tests of the
    oracle against each control."""
    control_of = {c["id"]: c for c in controls}
    table: dict[str, Any] = {}
    for space, rows in rows_by_space.items():
        rows = [r for r in rows if r["id"] in control_of]
        if not rows:
            continue
        temperatures = list(control_of[rows[0]["id"]]["sampling"])
        table[space] = {}
        for level in level_keys(rows):
            picked = at_level(rows, level)
            oracle = {r["id"]: solved(r, grading) for r in picked}
            tries = {r["id"]: len(r["evaluations"]) for r in picked}
            hits = {
                kind: control_hits(control_of, tries, space, kind, grading)
                for kind in [*temperatures, "random"]
            }
            best = max(temperatures, key=lambda t: rate(hits[t]))
            table[space][level] = {
                "n": len(picked),
                "mean_tries": mean(list(tries.values())),
                "oracle": rate(oracle),
                "sampling": {t: rate(hits[t]) for t in temperatures},
                "best_temperature": float(best),
                "sampling_best": rate(hits[best]),
                "random": rate(hits["random"]),
                "search_gain": rate(oracle) - max(rate(hits[best]), rate(hits["random"])),
                "oracle_vs_sampling": mcnemar(oracle, hits[best]),
                "oracle_vs_random": mcnemar(oracle, hits["random"]),
            }
    return table


def curve_budgets(rows: Rows) -> list[int]:
    most = max(r["simulations"] for r in rows)
    return sorted({b for b in CURVE_BUDGETS if b < most} | {most})


def oracle_curve(
    rows_by_space: dict[str, Rows], controls: Rows, grading: str = "strict"
) -> dict[str, Any]:
    """Per space and level, at 1, 2, 5, 10, … simulations: the oracle over the programs reached
    so far, the mean number of distinct programs reached, and the controls with as many tries
    as that (sampling at its best temperature at each point).  When some questions have
    controls, every row is over those questions only (``n``), so the rows compare alike."""
    control_of = {c["id"]: c for c in controls}
    curves: dict[str, Any] = {}
    for space, rows in rows_by_space.items():
        budgets = curve_budgets(rows)
        controlled = [r for r in rows if r["id"] in control_of]
        temperatures = list(control_of[controlled[0]["id"]]["sampling"]) if controlled else []
        compared = controlled or rows
        curves[space] = {"simulations": budgets}
        for level in level_keys(compared):
            picked = at_level(compared, level)
            entry: dict[str, Any] = {
                "n": len(picked),
                "oracle": [],
                "tries": [],
                "random": [],
                "sampling": [],
            }
            for budget in budgets:
                tries = {
                    r["id"]: sum(e["simulation"] <= budget for e in r["evaluations"])
                    for r in picked
                }
                entry["oracle"].append(rate({r["id"]: solved(r, grading, budget) for r in picked}))
                entry["tries"].append(mean(list(tries.values())))
                if controlled:
                    entry["random"].append(
                        rate(control_hits(control_of, tries, space, "random", grading))
                    )
                    entry["sampling"].append(
                        max(
                            rate(control_hits(control_of, tries, space, t, grading))
                            for t in temperatures
                        )
                    )
            curves[space][level] = entry
    return curves


def shorter_and_corrected(rows: Rows, depth: int) -> dict[str, Any]:
    """Finding 2: base-correct with a shorter valid program; base-wrong corrected, step deltas."""
    right = [r for r in rows if r["base_correct"]]
    wrong = [r for r in rows if not r["base_correct"]]
    shortest_right = [min(len(p) for p in r["valid_programs"]) for r in right]
    corrected = [r for r in wrong if r["valid_programs"]]
    deltas = Counter(min(len(p) for p in r["valid_programs"]) - depth for r in corrected)
    return {
        "base_correct": len(right),
        "with_shorter_valid": sum(n < depth for n in shortest_right),
        "share_with_shorter_valid": share_of(sum(n < depth for n in shortest_right), len(right)),
        "mean_shortest_steps_base_correct": mean(shortest_right),
        "base_wrong": len(wrong),
        "corrected": len(corrected),
        "share_corrected": share_of(len(corrected), len(wrong)),
        "corrected_steps_minus_depth": dict(sorted(deltas.items())),
    }


def existence_by_budget(rows: Rows, budgets: range) -> dict[str, float]:
    """Finding 3: share of questions with a valid program of at most B steps, per budget B."""
    return {
        str(b): share(rows, lambda r, b=b: any(len(p) <= b for p in r["valid_programs"]))
        for b in budgets
    }


def segment_histograms(rows: Rows, depth: int) -> dict[str, Any]:
    """Finding 4: segment lengths per op (canonical segment form) and per-layer repeat counts.

    Over the valid programs other than the identity; programs without a segment form are
    counted, not parsed.
    """
    lengths = {op.name.lower(): Counter() for op in Op}
    repeats: Counter = Counter()
    parsed = unparsed = 0
    base = identity(depth)
    for row in rows:
        for program in map(tuple, row["valid_programs"]):
            if program == base:
                continue
            repeats.update(n for n in Counter(program).values() if n > 1)
            form = to_segments(program, depth)
            if form is None:
                unparsed += 1
                continue
            parsed += 1
            for (start, end), op in zip(form.segments(), form.ops):
                lengths[op.name.lower()][end - start] += 1
    return {
        "programs_with_segment_form": parsed,
        "programs_without_segment_form": unparsed,
        "segment_length": {op: dict(sorted(c.items())) for op, c in lengths.items()},
        "layer_runs_per_repeated_layer": dict(sorted(repeats.items())),
    }


def luck_control(rows: Rows) -> dict[str, Any]:
    """Gold versus decoy answers among the programs searched for base-wrong questions.

    For a question with an integer gold answer g, a decoy is another integer with as many digits
    as g (not g, not the base answer); a near decoy also lies within ``NEAR`` of g. The decoy
    rate is the exact expectation over a uniformly drawn decoy of "some searched program answers
    the decoy", averaged over questions; the gold rate is the share of questions where some
    searched program answers g. Read the gold rate against the decoy rates.
    """
    questions = gold_hits = 0
    uniform = near = 0.0
    distinct: list[int] = []
    for row in rows:
        gold = as_integer(row["answer"])
        if row["base_correct"] or gold is None:
            continue
        answers = {as_integer(e["answer"]) for e in row["evaluations"] if e["answer"] is not None}
        answers.discard(None)
        base = as_integer(row["evaluations"][0]["answer"] or "")
        questions += 1
        gold_hits += gold in answers
        distinct.append(len(answers))
        uniform += decoy_hit_rate(answers, same_size(gold) - {gold, base})
        near_pool = {d for d in range(gold - NEAR, gold + NEAR + 1)} & same_size(gold)
        near += decoy_hit_rate(answers, near_pool - {gold, base})
    return {
        "base_wrong_integer_questions": questions,
        "gold_reached": gold_hits,
        "gold_rate": share_of(gold_hits, questions),
        "uniform_decoy_rate": uniform / questions if questions else None,
        "near_decoy_rate": near / questions if questions else None,
        "mean_distinct_answers": mean(distinct),
    }


def decoy_hit_rate(answers: set, pool: set[int]) -> float:
    return len(answers & pool) / len(pool) if pool else 0.0


def same_size(value: int) -> set[int]:
    """Non-negative integers with as many digits as ``value`` (sign kept)."""
    digits = len(str(abs(value)))
    low, high = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits
    return {v if value >= 0 else -v for v in range(low, high)}


INTEGER = re.compile(r"^-?\d+(?:\.0+)?$")


def as_integer(answer: str) -> int | None:
    text = normalize(answer).replace(" ", "")
    return int(float(text)) if INTEGER.match(text) else None


def share(rows: Rows, test) -> float | None:
    return share_of(sum(bool(test(r)) for r in rows), len(rows))


def share_of(count: int, total: int) -> float | None:
    return count / total if total else None


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def search_stats(
    rows_by_space: dict[str, Rows],
    depth: int,
    budgets: range,
    controls: Rows = (),
    recheck: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``search_stats.json`` holds."""
    controls = list(controls)
    stats: dict[str, Any] = {
        "depth": depth,
        "questions": {space: len(rows) for space, rows in rows_by_space.items()},
        "commits": sorted(
            {r.get("run", {}).get("commit", "unknown") for rs in rows_by_space.values() for r in rs}
        ),
        "oracle_accuracy": oracle_table(rows_by_space),
        "oracle_accuracy_lenient": oracle_table(rows_by_space, "lenient"),
        "head_to_head": head_to_head(rows_by_space),
        "shorter_and_corrected": {
            s: shorter_and_corrected(rows, depth) for s, rows in rows_by_space.items()
        },
        "existence_by_budget": {
            s: existence_by_budget(rows, budgets) for s, rows in rows_by_space.items()
        },
        "segments": {s: segment_histograms(rows, depth) for s, rows in rows_by_space.items()},
        "luck_control": {s: luck_control(rows) for s, rows in rows_by_space.items()},
        "oracle_curve": oracle_curve(rows_by_space, controls),
    }
    if controls:
        stats["controls"] = {g: control_table(rows_by_space, controls, g) for g in GRADINGS}
    if recheck is not None:
        stats["recheck"] = {k: v for k, v in recheck.items() if k != "differing"}
    return stats

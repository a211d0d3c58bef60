"""``search_stats.json``: the paper's oracle table and findings, from finished output rows.

Rows are grouped by space (``skip_loop``, ``skip``, ``loop``); every function takes the rows of
the spaces searched and the model depth D. A question is *solved* in a space when its search
found at least one valid program (the identity counts, so the oracle is never below Base).
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import combinations
from typing import Any

from polar.answers import normalize
from vllm_polar.program import Op, format_program, identity, to_segments

Rows = list[dict[str, Any]]
NEAR = 10
"""A near decoy differs from the gold answer by at most this much."""


def oracle_table(rows_by_space: dict[str, Rows]) -> dict[str, dict[str, Any]]:
    """Per level (and ``all``): n, Base accuracy and each space's oracle accuracy."""
    base_rows = next(iter(rows_by_space.values()))
    levels = sorted({row["level"] for row in base_rows}, key=str)
    table = {}
    for level in [*levels, "all"]:

        def pick(rows: Rows, level=level) -> Rows:
            return [r for r in rows if level == "all" or r["level"] == level]

        entry: dict[str, Any] = {"n": len(pick(base_rows))}
        entry["base"] = share(pick(base_rows), lambda r: r["base_correct"])
        for space, rows in rows_by_space.items():
            entry[space] = share(pick(rows), lambda r: bool(r["valid_programs"]))
        table[str(level)] = entry
    return table


def head_to_head(rows_by_space: dict[str, Rows]) -> dict[str, dict[str, Any]]:
    """Paired comparison of every two spaces over the questions both searched.

    ``only_a`` / ``only_b``: questions solved in one space and not the other; ``p_value``: the
    exact two-sided McNemar test (binomial on the discordant questions) of "neither space solves
    more questions than the other". Keyed ``"<a>_vs_<b>"`` in the order the spaces were searched.
    """
    from scipy.stats import binomtest

    solved = {
        space: {r["id"]: bool(r["valid_programs"]) for r in rows}
        for space, rows in rows_by_space.items()
    }
    table = {}
    for a, b in combinations(solved, 2):
        shared = solved[a].keys() & solved[b].keys()
        only_a = sum(solved[a][q] and not solved[b][q] for q in shared)
        only_b = sum(solved[b][q] and not solved[a][q] for q in shared)
        discordant = only_a + only_b
        table[f"{a}_vs_{b}"] = {
            "a": a,
            "b": b,
            "questions": len(shared),
            "only_a": only_a,
            "only_b": only_b,
            "p_value": binomtest(only_a, discordant).pvalue if discordant else 1.0,
        }
    return table


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


def luck_control(rows: Rows, depth: int) -> dict[str, Any]:
    """Gold versus decoy answers among the programs searched for base-wrong questions.

    For a question with an integer gold answer g, a decoy is another integer with as many digits
    as g (not g, not the base answer); a near decoy also lies within ``NEAR`` of g. The decoy
    rate is the exact expectation over a uniformly drawn decoy of "some searched program answers
    the decoy", averaged over questions; the gold rate is the share of questions where some
    searched program answers g. Read the gold rate against the decoy rates.
    """
    base_text = format_program(identity(depth))
    questions = gold_hits = 0
    uniform = near = 0.0
    distinct: list[int] = []
    for row in rows:
        gold = as_integer(row["answer"])
        if row["base_correct"] or gold is None:
            continue
        answers = {as_integer(a) for a in row["answers"].values() if a is not None}
        answers.discard(None)
        base = as_integer(row["answers"].get(base_text) or "")
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


def search_stats(rows_by_space: dict[str, Rows], depth: int, budgets: range) -> dict[str, Any]:
    """Everything ``search_stats.json`` holds."""
    return {
        "depth": depth,
        "questions": {space: len(rows) for space, rows in rows_by_space.items()},
        "oracle_accuracy": oracle_table(rows_by_space),
        "head_to_head": head_to_head(rows_by_space),
        "shorter_and_corrected": {
            s: shorter_and_corrected(rows, depth) for s, rows in rows_by_space.items()
        },
        "existence_by_budget": {
            s: existence_by_budget(rows, budgets) for s, rows in rows_by_space.items()
        },
        "segments": {s: segment_histograms(rows, depth) for s, rows in rows_by_space.items()},
        "luck_control": {s: luck_control(rows, depth) for s, rows in rows_by_space.items()},
    }

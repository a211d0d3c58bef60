"""pass@k, intervals and paired tests on hand-made results."""

from __future__ import annotations

import math

import pytest

from polar.evaluation.report import method_metrics, metrics
from polar.evaluation.run import Attempt, MethodRun
from polar.metrics import mcnemar, pass_at, ranked_pass_at, wilson


def test_unbiased_pass_at_k_by_hand():
    assert pass_at(5, 0, 3) == 0.0
    assert pass_at(5, 5, 1) == 1.0
    assert pass_at(5, 1, 1) == pytest.approx(1 / 5)
    assert pass_at(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert pass_at(4, 3, 2) == 1.0  # any two of four hold one of the three
    with pytest.raises(ValueError):
        pass_at(3, 4, 1)
    assert ranked_pass_at([False, True, False], 1) == 0.0
    assert ranked_pass_at([False, True, False], 2) == 1.0


def test_wilson_interval_by_hand():
    low, high = wilson(5, 10)
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half-width z * sqrt(0.025 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson(0, 20)[0] == 0.0 and 0 < wilson(0, 20)[1] < 0.2
    assert wilson(20, 20)[1] == 1.0


def test_mcnemar_is_exact_binomial_on_discordant_pairs():
    a = {f"q{i}": i < 6 for i in range(10)}
    b = {f"q{i}": i in (0, 7) for i in range(10)}
    result = mcnemar(a, b)
    assert (result["only_a"], result["only_b"]) == (5, 1)
    assert result["p_value"] == pytest.approx(2 * (1 + 6) / 2**6)


def attempt(method, question, index, correct, level=1, steps=24, lenient=None):
    return Attempt(
        method=method,
        id=question,
        attempt=index,
        program="0-23",
        steps=steps,
        unique_layers=min(steps, 24),
        completion="",
        answer=None,
        strict=correct,
        lenient=correct if lenient is None else lenient,
        level=level,
    )


def run_of(method, outcomes, level_of=lambda q: 1, steps=24):
    return MethodRun(
        [
            attempt(method, q, i, c, level_of(q), steps)
            for q, tries in outcomes.items()
            for i, c in enumerate(tries)
        ],
        seconds=2.0 * len(outcomes),
    )


def test_ranked_and_exchangeable_pass_at_k_on_hand_made_tries():
    outcomes = {"a": [False, True, False], "b": [True, False, False], "c": [False, False, False]}
    ranked = method_metrics(run_of("polar", outcomes), 3, ranked=True)["levels"]["all"]
    assert [ranked[f"pass@{j}"] for j in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    samples = method_metrics(run_of("sampling", outcomes), 3, ranked=False)["levels"]["all"]
    # each of a and b has 1 correct of 3 tries: pass@1 = 1/3, pass@2 = 2/3, pass@3 = 1
    assert [samples[f"pass@{j}"] for j in (1, 2, 3)] == pytest.approx([2 / 9, 4 / 9, 2 / 3])
    assert samples["pass@1_ci"] == pytest.approx(list(wilson(2 / 3, 3)))


def test_metrics_by_level_with_time_ratios_and_tests():
    levels = {"a": 1, "b": 1, "c": 2, "d": 2}
    runs = {
        "base": run_of("base", {"a": [True], "b": [False], "c": [False], "d": [False]}, levels.get),
        "polar": run_of(
            "polar",
            {"a": [True, False], "b": [False, True], "c": [True, True], "d": [False, False]},
            levels.get,
            steps=20,
        ),
    }
    runs["polar"].seconds = 4.0 * 4
    result = metrics(runs, 2, {"polar"})
    assert result["base"]["levels"]["1"]["pass@1"] == 0.5
    assert result["polar"]["levels"]["2"]["pass@1"] == 0.5
    assert result["polar"]["levels"]["all"]["pass@2"] == 0.75
    assert result["polar"]["time_ratio_to_base"] == 2.0
    assert result["polar"]["mean_steps"] == 20
    assert result["tests"]["polar_pass@1_vs_base"]["only_a"] == 1  # c
    assert result["tests"]["polar_pass@2_vs_base"]["only_a"] == 2  # b, c

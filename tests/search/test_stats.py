"""Statistics and plots from hand-built rows with known answers."""

from __future__ import annotations

import json

from polar.search.cli import summary
from polar.search.mcts import MCTSConfig
from polar.search.run import SearchSettings, search_questions, write_stats
from polar.search.stats import (
    head_to_head,
    luck_control,
    oracle_table,
    search_stats,
    segment_histograms,
    shorter_and_corrected,
)
from tests.search.synthetic import DEPTH, PlantedReward, examples
from vllm_polar.program import format_program, identity

D = 6
BASE = identity(D)
SHORT = (0, 1, 2, 4, 5)  # skip layer 3
LOOP = (0, 1, 2, 3, 2, 3, 4, 5)  # repeat 2-3


def row(level, base_correct, valid, answer="42", answers=None):
    return {
        "id": f"q{level}{base_correct}{len(valid)}",
        "level": level,
        "answer": answer,
        "base_correct": base_correct,
        "valid_programs": [list(p) for p in valid],
        "invalid_programs": [],
        "answers": answers or {},
    }


def test_oracle_table_and_finding_2():
    rows = [
        row(1, True, [BASE, SHORT]),
        row(1, False, [LOOP]),
        row(2, False, []),
        row(2, True, [BASE]),
    ]
    skip_rows = [
        row(1, True, [BASE, SHORT]),
        row(1, False, []),
        row(2, False, []),
        row(2, True, [BASE]),
    ]
    table = oracle_table({"skip_loop": rows, "skip": skip_rows})
    assert table["1"] == {"n": 2, "base": 0.5, "skip_loop": 1.0, "skip": 0.5}
    assert table["all"] == {"n": 4, "base": 0.5, "skip_loop": 0.75, "skip": 0.5}
    finding = shorter_and_corrected(rows, D)
    assert finding["share_with_shorter_valid"] == 0.5
    assert finding["share_corrected"] == 0.5
    assert finding["corrected_steps_minus_depth"] == {2: 1}


def test_head_to_head_counts_discordant_questions_and_tests_them_exactly():
    def rows(solved):
        return [{**row(1, False, [LOOP] if s else []), "id": f"q{i}"} for i, s in enumerate(solved)]

    # q0-q4 solved only by the first space, q5 by both, q6 by neither, q7 only by the second
    first = rows([1, 1, 1, 1, 1, 1, 0, 0])
    second = rows([0, 0, 0, 0, 0, 1, 0, 1])
    comparison = head_to_head({"skip_loop": first, "skip": second})["skip_loop_vs_skip"]
    assert {k: comparison[k] for k in ("questions", "only_a", "only_b")} == {
        "questions": 8,
        "only_a": 5,
        "only_b": 1,
    }
    # two-sided exact binomial: P(X <= 1) + P(X >= 5) for X ~ Bin(6, 1/2)
    assert abs(comparison["p_value"] - 2 * (1 + 6) / 2**6) < 1e-12
    tie = head_to_head({"skip_loop": first, "loop": first})["skip_loop_vs_loop"]
    assert tie["only_a"] == tie["only_b"] == 0 and tie["p_value"] == 1.0
    lines = summary(search_stats({"skip_loop": first, "skip": second}, D, range(1, 2))).split("\n")
    assert lines == [
        "oracle accuracy (all levels): base 0.0 %, skip_loop 75.0 %, skip 25.0 %",
        "skip_loop vs skip: solved only by skip_loop 5, only by skip 1 of 8 "
        "(exact McNemar p = 0.22)",
    ]


def test_segment_histograms_use_the_segment_form():
    stats = segment_histograms([row(1, True, [BASE, SHORT, LOOP, (5, 4)])], D)
    assert stats["programs_with_segment_form"] == 2 and stats["programs_without_segment_form"] == 1
    assert stats["segment_length"]["skip"] == {1: 1}
    assert stats["segment_length"]["repeat"] == {2: 1}
    assert stats["layer_runs_per_repeated_layer"] == {2: 2}


def test_luck_control_counts_gold_and_exact_decoy_expectation():
    base_text = format_program(BASE)
    wrong = {base_text: "40", "0-4": "42", "1-5": "43", "2-5": "7", "3-5": "nonsense"}
    rows = [row(1, False, [(0, 1, 2, 3, 4)], answers=wrong), row(1, True, [BASE])]
    luck = luck_control(rows, D)
    assert luck["base_wrong_integer_questions"] == 1 and luck["gold_reached"] == 1
    assert luck["uniform_decoy_rate"] == 1 / 88  # 43 among 10..99 without 42 and 40
    assert luck["near_decoy_rate"] == 1 / 19  # 43 among 32..52 without 42 and 40


def test_write_stats_writes_json_and_plots(tmp_path):
    spaces = ("skip_loop", "skip", "loop")
    settings = SearchSettings(depth=DEPTH, min_steps=6, max_steps=15, mcts=MCTSConfig(30))
    out = tmp_path / "s.jsonl"
    search_questions(examples(4), PlantedReward(), settings, out, spaces, show_progress=False)
    stats = write_stats(out, spaces, settings, tmp_path / "stats")
    assert json.loads((tmp_path / "stats" / "search_stats.json").read_text()) == json.loads(
        json.dumps(stats)
    )
    assert stats["oracle_accuracy"]["all"]["base"] == 0.5
    assert stats["oracle_accuracy"]["all"]["skip"] == 0.5  # the planted programs need a loop
    assert len(list((tmp_path / "stats").glob("*.png"))) == 5

"""Statistics and plots from hand-built rows with known answers."""

from __future__ import annotations

import json
import random

from polar.search.cli import summary
from polar.search.controls import random_programs, read_controls, run_controls
from polar.search.mcts import MCTSConfig
from polar.search.records import read_rows
from polar.search.run import SearchSettings, output_paths, search_questions, write_stats
from polar.search.space import SearchSpace
from polar.search.stats import (
    control_table,
    head_to_head,
    luck_control,
    oracle_curve,
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


def evaluation(program, correct, simulation, depth=1, answer=None, lenient=None):
    return {
        "program": format_program(program),
        "simulation": simulation,
        "depth": depth,
        "completion": f"\\boxed{{{answer}}}",
        "answer": answer,
        "strict": correct,
        "lenient": correct if lenient is None else lenient,
    }


def row(level, base_correct, valid, answer="42", wrong=(), id=None):
    """A finished search: the identity first, then the valid and the ``wrong`` programs."""
    others = [p for p in valid if p != BASE]
    evaluations = [
        evaluation(BASE, base_correct, 1, depth=0, answer=answer if base_correct else "0")
    ]
    evaluations += [evaluation(p, True, 2 + i, answer=answer) for i, p in enumerate(others)]
    evaluations += [
        evaluation(p, False, 2 + len(others) + i, answer=a) for i, (p, a) in enumerate(wrong)
    ]
    return {
        "id": id or f"q{level}{base_correct}{len(valid)}",
        "level": level,
        "answer": answer,
        "base_correct": base_correct,
        "valid_programs": [list(p) for p in valid],
        "invalid_programs": [],
        "simulations": len(evaluations),
        "evaluations": evaluations,
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


def test_lenient_oracle_counts_expressions_the_strict_one_does_not():
    lenient_only = row(1, False, [])
    lenient_only["evaluations"].append(evaluation(LOOP, False, 2, answer="40 + 2", lenient=True))
    rows = [lenient_only, row(1, True, [BASE])]
    assert oracle_table({"loop": rows})["all"] == {"n": 2, "base": 0.5, "loop": 0.5}
    assert oracle_table({"loop": rows}, "lenient")["all"] == {"n": 2, "base": 0.5, "loop": 1.0}


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
        "oracle accuracy (all levels, strict): base 0.0 %, skip_loop 75.0 %, skip 25.0 %",
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
    wrong = [((1, 2, 3, 4, 5), "43"), ((2, 3, 4, 5), "7"), ((3, 4, 5), "nonsense")]
    searched = row(1, False, [(0, 1, 2, 3, 4)], wrong=wrong)
    searched["evaluations"][0]["answer"] = "40"
    luck = luck_control([searched, row(1, True, [BASE])])
    assert luck["base_wrong_integer_questions"] == 1 and luck["gold_reached"] == 1
    assert luck["uniform_decoy_rate"] == 1 / 88  # 43 among 10..99 without 42 and 40
    assert luck["near_decoy_rate"] == 1 / 19  # 43 among 32..52 without 42 and 40


def graded(*correct: bool) -> list[dict]:
    return [{"completion": "", "answer": None, "strict": c, "lenient": c} for c in correct]


def control(id, level, sampling, random):
    return {"id": id, "level": level, "sampling": sampling, "random": {"loop": graded(*random)}}


def test_controls_and_curve_on_hand_made_rows():
    """Three questions searched in the Loop space, each with its controls:

    - a: identity wrong, LOOP correct at simulation 5 (3 programs reached in all); sampling at
      0.3 is right on its 3rd try, at 1.0 never; the 2nd random program is right;
    - b: identity right (oracle from simulation 1); sampling right only on a 4th try (beyond its
      budget of 1); random = the identity, right;
    - c: nothing right anywhere, but sampling at 1.0 is right on its 1st try (of 2).
    """
    a = row(1, False, [], id="a", wrong=[(SHORT, "1")])
    a["evaluations"].append(evaluation(LOOP, True, 5, depth=2, answer="42"))
    b = row(1, True, [BASE], id="b")
    c = row(2, False, [], id="c", wrong=[(SHORT, "7")])
    for r in (a, b, c):
        r["simulations"] = 6
    controls = [
        control("a", 1, {"0.3": graded(0, 0, 1), "1.0": graded(0, 0, 0)}, [0, 1, 0]),
        control("b", 1, {"0.3": graded(0, 0, 0, 1), "1.0": graded(0, 0, 0, 0)}, [1]),
        control("c", 2, {"0.3": graded(0, 0), "1.0": graded(1, 0)}, [0, 0]),
    ]
    table = control_table({"loop": [a, b, c]}, controls)["loop"]
    level_1 = table["1"]
    assert (level_1["n"], level_1["mean_tries"], level_1["oracle"]) == (2, 2.0, 1.0)
    assert level_1["sampling"] == {"0.3": 0.5, "1.0": 0.0}
    assert (level_1["best_temperature"], level_1["sampling_best"]) == (0.3, 0.5)
    assert level_1["random"] == 1.0 and level_1["search_gain"] == 0.0
    assert level_1["oracle_vs_sampling"]["only_a"] == 1  # b: the oracle alone
    overall = table["all"]
    assert overall["oracle"] == 2 / 3 and overall["sampling"] == {"0.3": 1 / 3, "1.0": 1 / 3}
    assert overall["random"] == 2 / 3 and overall["search_gain"] == 0.0
    assert table["2"]["search_gain"] == -1.0  # c: sampling at 1.0 beats a search that failed

    curve = oracle_curve({"loop": [a, b, c]}, controls)["loop"]
    assert curve["simulations"] == [1, 2, 5, 6]
    assert curve["all"]["oracle"] == [1 / 3, 1 / 3, 2 / 3, 2 / 3]
    assert curve["all"]["tries"] == [1.0, 5 / 3, 2.0, 2.0]
    # at 1 simulation every question has 1 try: a and c miss, b's identity is right
    assert curve["all"]["random"] == [1 / 3, 2 / 3, 2 / 3, 2 / 3]
    # best temperature at each point: 1.0 (c) at 1 and 2 simulations; 0.3 (a) ties it later
    assert curve["all"]["sampling"] == [1 / 3, 1 / 3, 1 / 3, 1 / 3]
    assert curve["all"]["n"] == 3

    # c without controls: every row of the curve is over a and b only, the oracle included
    partial = oracle_curve({"loop": [a, b, c]}, controls[:2])["loop"]
    assert partial["all"]["n"] == 2 and "2" not in partial
    assert partial["all"]["oracle"] == [1 / 2, 1 / 2, 1.0, 1.0]
    assert partial["all"]["random"] == [1 / 2, 1.0, 1.0, 1.0]


def test_random_programs_walk_the_space_to_the_depths_of_the_search():
    space = SearchSpace(kind="loop", min_steps=6, max_steps=15)
    root = identity(DEPTH)
    drawn = random_programs(space, root, [1, 1, 2, 3], random.Random(0))
    assert drawn[0] == (root, 0) and [d for _, d in drawn] == [0, 1, 1, 2, 3]
    programs = [p for p, _ in drawn]
    assert len(set(programs)) == 5 and all(space.admits(p) for p in programs)
    assert all(len(p) > DEPTH for p in programs[1:])  # loops only lengthen
    one_action = set(space.children(root))
    assert programs[1] in one_action and programs[2] in one_action
    assert drawn == random_programs(space, root, [1, 1, 2, 3], random.Random(0))


def test_write_stats_writes_json_and_plots(tmp_path):
    spaces = ("skip_loop", "skip", "loop")
    settings = SearchSettings(depth=DEPTH, min_steps=6, max_steps=15, mcts=MCTSConfig(30))
    out = tmp_path / "s.jsonl"
    evaluator = PlantedReward()
    search_questions(examples(4), evaluator, settings, out, spaces, show_progress=False)
    rows = {s: read_rows(p) for s, p in output_paths(out, spaces).items()}
    run_controls(examples(4), evaluator, settings, rows, out, show_progress=False)
    controls = read_controls(out)
    assert [c["id"] for c in controls] == [e.id for e in examples(4)]
    for c in controls:
        for space in spaces:
            tries = c["counts"][space]
            assert tries == len(next(r for r in rows[space] if r["id"] == c["id"])["evaluations"])
            assert len(c["random"][space]) == tries
            assert c["random"][space][0]["program"] == format_program(identity(DEPTH))
        assert all(len(s) == max(c["counts"].values()) for s in c["sampling"].values())
    stats = write_stats(out, spaces, settings, tmp_path / "stats")
    assert json.loads((tmp_path / "stats" / "search_stats.json").read_text()) == json.loads(
        json.dumps(stats)
    )
    assert stats["oracle_accuracy"]["all"]["base"] == 0.5
    assert stats["oracle_accuracy"]["all"]["skip"] == 0.5  # the planted programs need a loop
    # the planted sampler is right from its 2nd try at T = 1.0: every question has >= 2 tries
    assert stats["controls"]["strict"]["skip"]["all"]["sampling"]["1.0"] == 1.0
    assert len(list((tmp_path / "stats").glob("*.png"))) == 7
    tables = (tmp_path / "stats" / "search_stats.md").read_text()
    assert "| all | 4 | 50.0 | " in tables and "Skip&Loop (strict): oracle against" in tables

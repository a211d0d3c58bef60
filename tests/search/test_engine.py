"""Integration: a search through the real runtime reports only programs that re-run correctly.

SmolLM2-135M answers almost no arithmetic word problem, so the questions here are ones it does
answer under the identity (checked by the test): the search then finds many valid programs and
many invalid ones, and both must be reproduced one request at a time.
"""

from __future__ import annotations

from vllm import SamplingParams

from polar.answers import grade, is_correct
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.search.engine import EngineEvaluator
from polar.search.mcts import MCTSConfig
from polar.search.records import read_rows
from polar.search.run import SearchSettings, recheck, search_questions
from polar.stopping import STOP_AFTER_BOXED
from polar.tasks import Example
from vllm_polar.program import FIELD, format_program, identity

QUESTIONS = [
    ("What is 2 + 2?", "4"),
    ("Repeat the number 7.", "7"),
    ("How many legs does a dog have?", "4"),
]
EXAMPLES = [
    Example(id=f"easy/{i}", question=q, answer=a, metadata={"level": 1})
    for i, (q, a) in enumerate(QUESTIONS)
]


def run_alone(llm, example: Example, program) -> str:
    """The completion of one request sent on its own (no batch neighbours)."""
    prompt = direct_answer_prompt(example.question, llm.get_tokenizer())
    params = SamplingParams(
        temperature=0.0,
        max_tokens=MAX_NEW_TOKENS,
        extra_args={FIELD: list(program), STOP_AFTER_BOXED: True},
    )
    return llm.generate([prompt], params, use_tqdm=False)[0].outputs[0].text


def test_reported_programs_rerun_with_the_same_completion(smollm2, tmp_path):
    llm, depth, slots = smollm2
    settings = SearchSettings(
        depth=depth, min_steps=depth // 2, max_steps=slots, mcts=MCTSConfig(8, wave=4)
    )
    evaluator = EngineEvaluator(llm, EXAMPLES)
    out = tmp_path / "supervision.jsonl"
    progress = search_questions(EXAMPLES, evaluator, settings, out, show_progress=False)
    assert progress.simulations == 8 * len(EXAMPLES)
    rows = {r["id"]: r for r in read_rows(out)}
    assert sum(r["base_correct"] for r in rows.values()) >= 2  # the questions are easy for it
    valid = [(e, tuple(p)) for e in EXAMPLES for p in rows[e.id]["valid_programs"]]
    invalid = [(e, tuple(p)) for e in EXAMPLES for p in rows[e.id]["invalid_programs"][:1]]
    assert len(valid) >= 6 and invalid  # the search found both kinds
    for example, program in valid + invalid:
        text = run_alone(llm, example, program)
        expected = (example, program) in valid
        assert is_correct(text, example.answer) == expected, (format_program(program), text)
        recorded = next(
            e for e in rows[example.id]["evaluations"] if e["program"] == format_program(program)
        )
        assert recorded["completion"] == text
        assert recorded == {**recorded, **grade(text, example.answer)}


def test_base_samples_are_identity_completions_at_the_temperature(smollm2):
    llm, depth, _ = smollm2
    evaluator = EngineEvaluator(llm, EXAMPLES)
    samples = evaluator.sample({"easy/0": 6, "easy/1": 3, "easy/2": 0}, temperature=1.0)
    assert {q: len(s) for q, s in samples.items()} == {"easy/0": 6, "easy/1": 3}
    assert len({s["completion"] for s in samples["easy/0"]}) > 1  # sampled, not greedy
    greedy = run_alone(llm, EXAMPLES[0], identity(depth))
    cold = evaluator.sample({"easy/0": 2}, temperature=1e-4)["easy/0"]
    assert [s["completion"] for s in cold] == [greedy, greedy]


def test_recheck_reruns_stored_pairs_and_reports_a_changed_completion(smollm2, tmp_path):
    llm, depth, slots = smollm2
    settings = SearchSettings(
        depth=depth, min_steps=depth // 2, max_steps=slots, mcts=MCTSConfig(4, wave=4)
    )
    out = tmp_path / "supervision.jsonl"
    run = {"commit": "written"}
    evaluator = EngineEvaluator(llm, EXAMPLES)
    search_questions(EXAMPLES, evaluator, settings, out, show_progress=False, run=run)
    rows = read_rows(out)
    pairs = sum(len(r["evaluations"]) for r in rows)
    this_run = {"commit": "now"}
    agreement = recheck(llm, EXAMPLES, rows, pairs, seed=0, run=this_run)
    assert agreement["pairs"] == pairs
    assert agreement["same_completion"] == agreement["same_reward"] == pairs
    assert agreement["pairs_by_commit"] == {"written": pairs}
    assert agreement["run"] == this_run and agreement["differing"] == []

    stored = rows[0]["evaluations"][0]
    stored["completion"] += " (edited)"
    stored["strict"] = not stored["strict"]
    agreement = recheck(llm, EXAMPLES, rows, pairs, seed=0, run=this_run)
    assert agreement["same_completion"] == agreement["same_reward"] == pairs - 1
    assert [d["id"] for d in agreement["differing"]] == [rows[0]["id"]]

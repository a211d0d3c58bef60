"""Integration: a search through the real runtime reports only programs that re-run correctly.

SmolLM2-135M answers almost no arithmetic word problem, so the questions here are ones it does
answer under the identity (checked by the test): the search then finds many valid programs and
many invalid ones, and both must be reproduced one request at a time.
"""

from __future__ import annotations

from vllm import SamplingParams

from polar.answers import extract_answer, is_correct
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.search.engine import EngineEvaluator
from polar.search.mcts import MCTSConfig
from polar.search.records import read_rows
from polar.search.run import SearchSettings, search_questions
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
        temperature=0.0, max_tokens=MAX_NEW_TOKENS, extra_args={FIELD: list(program)}
    )
    return llm.generate([prompt], params, use_tqdm=False)[0].outputs[0].text


def test_reported_programs_rerun_with_the_same_verdict(smollm2, tmp_path):
    llm, depth, slots = smollm2
    settings = SearchSettings(
        depth=depth, min_steps=depth // 2, max_steps=slots, mcts=MCTSConfig(8, wave=4)
    )
    evaluator = EngineEvaluator(llm, EXAMPLES)
    out = tmp_path / "supervision.jsonl"
    progress = search_questions(
        EXAMPLES, evaluator, settings, out, answers_of=evaluator.answers.get, show_progress=False
    )
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
        recorded = rows[example.id]["answers"][format_program(program)]
        assert extract_answer(text) == recorded


def test_checked_completions_equal_decoding_from_the_prompt(smollm2):
    """Reusing a question's known completion changes no token: every pair evaluated through a
    check (confirmed whole, or decoded on from the confirmed prefix) gets the completion that
    decoding it from the prompt alone gives."""
    llm, depth, _ = smollm2
    base = identity(depth)
    programs = [tuple(i for i in base if i != skipped) for skipped in (2, 9, 17, 24, 28)] + [
        (*range(16), 15, *range(16, depth)),
        (*range(9), *range(5, depth)),
        (*range(20), *range(24, depth)),
    ]
    pairs = [(e.id, p) for e in EXAMPLES for p in programs]
    reusing = EngineEvaluator(llm, EXAMPLES, reuse=True)
    reusing([(e.id, base) for e in EXAMPLES])
    rewards = reusing(pairs)
    assert reusing.stats.confirmed > 0 and reusing.stats.continued > 0  # both paths ran
    assert reusing.stats.decoded == len(EXAMPLES)  # only the identities were decoded whole
    decoding = EngineEvaluator(llm, EXAMPLES)
    for pair, reward in zip(pairs, rewards):
        assert decoding([pair]) == [reward]
        question_id, program = pair
        assert (
            reusing.completions[question_id][program] == decoding.completions[question_id][program]
        ), format_program(program)

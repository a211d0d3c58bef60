"""The arith levels get harder on the model they were calibrated on.

Qwen2.5-Coder-0.5B-Instruct answers the first 24 test questions of levels 1, 3 and 5 greedily
with the direct-answer prompt (stock vLLM, float32, 50 new tokens). Calibration on 50–100
questions per level measured about 80 %, 35 % and under 10 %; the bounds below leave room for
the sampling noise of 24 questions.
"""

from __future__ import annotations

from polar.answers import is_correct
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.tasks import load_task

QUESTIONS_PER_LEVEL = 24


def accuracy_by_level(llm, levels: tuple[int, ...]) -> dict[int, float]:
    from vllm import SamplingParams

    tokenizer = llm.get_tokenizer()
    examples = {lv: load_task(f"arith-{lv}", "test", limit=QUESTIONS_PER_LEVEL) for lv in levels}
    flat = [(lv, ex) for lv in levels for ex in examples[lv]]
    prompts = [direct_answer_prompt(ex.question, tokenizer) for _, ex in flat]
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=MAX_NEW_TOKENS))
    correct = dict.fromkeys(levels, 0)
    for (lv, ex), output in zip(flat, outputs):
        correct[lv] += is_correct(output.outputs[0].text, ex.answer)
    return {lv: correct[lv] / QUESTIONS_PER_LEVEL for lv in levels}


def test_accuracy_falls_with_level(qwen_llm) -> None:
    accuracy = accuracy_by_level(qwen_llm, (1, 3, 5))
    assert accuracy[1] >= 0.55, accuracy
    assert accuracy[5] <= 0.2, accuracy
    assert accuracy[1] > accuracy[3] > accuracy[5], accuracy

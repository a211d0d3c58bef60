"""On the real Qwen2.5-Coder-0.5B-Instruct (stock vLLM, float32): the arith levels get harder,
and stopping at the first closed box changes nothing before it.

Difficulty:
Qwen2.5-Coder-0.5B-Instruct answers the first 24 test questions of levels 1, 3 and 5 greedily
with the direct-answer prompt (stock vLLM, float32, 50 new tokens). On 40 validation
questions per level it scored 62.5 %, 17.5 % and 2.5 %; the bounds below leave room for the
sampling noise of 24 questions.
"""

from __future__ import annotations

from polar.answers import extract_boxed, is_correct
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.stopping import STOP_AFTER_BOXED
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


def test_stopping_after_the_box_keeps_the_completion_up_to_it(qwen_llm) -> None:
    from vllm import SamplingParams

    tokenizer = qwen_llm.get_tokenizer()
    examples = [e for level in (1, 2, 4) for e in load_task(f"arith-{level}", "val", limit=6)]
    prompts = [direct_answer_prompt(e.question, tokenizer) for e in examples]
    full, stopped = (
        qwen_llm.generate(
            prompts,
            SamplingParams(
                temperature=0.0, max_tokens=MAX_NEW_TOKENS, extra_args={STOP_AFTER_BOXED: stop}
            ),
            use_tqdm=False,
        )
        for stop in (False, True)
    )
    boxed = 0
    for whole, cut in zip(full, stopped):
        whole, cut = whole.outputs[0].text, cut.outputs[0].text
        assert whole.startswith(cut)
        if extract_boxed(whole) is not None:
            boxed += 1
            assert extract_boxed(cut) is not None and cut.endswith("}")
            assert extract_boxed(cut[:-1]) is None  # cut right after the closing brace
        else:
            assert cut == whole
    # Qwen boxes most direct answers (86 % over the validation split): the cut is exercised on
    # many completions, whichever kernels this CPU picks.
    assert boxed >= len(examples) // 2, boxed

"""``vllm_polar.LLM``: predictor-chosen programs offline, pass@k, programs on the outputs."""

from __future__ import annotations

from tests.serving.conftest import DEPTH, greedy, questions, served_prompts
from vllm_polar.program import format_program, identity


def texts(outputs) -> list[str]:
    return [o.outputs[0].text for o in outputs]


def test_polar_runs_the_predictors_top1_program(offline_llm, predictor):
    prompts, predictor_texts = served_prompts(offline_llm.get_tokenizer())
    top1 = [c[0].program for c in predictor.predict(predictor_texts, 1)]
    # A mixed batch: the prompts get different programs (how well the predictor learned the
    # topics is tests/predictor's business).
    assert len(set(top1)) >= 2
    outputs = offline_llm.generate(prompts, greedy(), polar=True)
    for output, program in zip(outputs, top1):
        ran = output.outputs[0].polar
        assert ran.program == program
        assert ran.text == format_program(program) and ran.steps == len(program)
    explicit = offline_llm.generate(prompts, greedy(), programs=top1)
    assert texts(outputs) == texts(explicit)


def test_polar_false_runs_the_stock_depth(offline_llm):
    prompts = questions(1)
    outputs = offline_llm.generate(prompts, greedy(), polar=False)
    assert all(o.outputs[0].polar.program == identity(DEPTH) for o in outputs)
    explicit = offline_llm.generate(prompts, greedy(), programs=[identity(DEPTH)] * len(prompts))
    assert texts(outputs) == texts(explicit)


def test_n_equals_k_runs_the_top_k_distinct_programs(offline_llm, predictor):
    prompt = questions(1)[0]
    top3 = [c.program for c in predictor.predict([prompt], 3)[0]]
    assert len(set(top3)) == 3
    [output] = offline_llm.generate([prompt], greedy(n=3))
    ran = {c.index: c for c in output.outputs}
    assert [ran[i].polar.program for i in range(3)] == top3
    for i, program in enumerate(top3):
        [solo] = offline_llm.generate([prompt], greedy(), programs=[program])
        assert ran[i].text == solo.outputs[0].text, f"completion {i} under {program}"


def test_explicit_program_bypasses_the_predictor(offline_llm):
    prompt = questions(1)[0]
    program = (0, 1, 2, 2, *range(3, DEPTH))
    [output] = offline_llm.generate([prompt], greedy(), programs=[program])
    assert output.outputs[0].polar.program == program


def test_chat_completions_show_the_program_they_ran(offline_llm, predictor):
    tokenizer = offline_llm.get_tokenizer()
    messages = [{"role": "user", "content": questions(1)[1]}]
    [output] = offline_llm.chat([messages], greedy(), use_tqdm=False)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    [[best]] = predictor.predict(
        [tokenizer.decode(tokenizer.encode(rendered), skip_special_tokens=True)], 1
    )
    ran = output.outputs[0].polar
    assert ran.program == best.program
    [solo] = offline_llm.generate([rendered], greedy(), programs=[ran.program])
    assert output.outputs[0].text == solo.outputs[0].text
    assert offline_llm.ran_programs == {}

"""PoLar engines compute F_pi exactly: checked against the no-cache transformers reference."""

from __future__ import annotations

import pytest

from tests.runtime.conftest import (
    MAX_STEPS,
    PROGRAMS,
    generate,
    greedy,
    prompt_ids,
    start_engine,
    stop_engine,
)
from tests.runtime.tiny import FAMILIES, NUM_LAYERS
from vllm_polar import config as polar_config
from vllm_polar.runtime import runner as polar_runner
from vllm_polar.runtime.plan import Costs
from vllm_polar.runtime.requests import cache_salt

TOLERANCE = 1e-4

# Prompt lengths 5..50 with 32-token chunks: the longer prompts are prefilled in several
# chunks, the short ones in one, and every request then decodes MAX_TOKENS tokens.
PROMPT_LENGTHS = [5, 14, 23, 33, 41, 50]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_engine(request, checkpoints):
    llm = start_engine(
        checkpoints(request.param),
        {"max_steps": MAX_STEPS},
        max_num_batched_tokens=32,
        enable_chunked_prefill=True,
    )
    yield request.param, llm
    stop_engine(llm)


def assert_matches_reference(reference, prompt, program, result):
    tokens, logprobs = result
    ref_tokens, ref_logprobs = reference.greedy(prompt, program, len(tokens))
    assert tokens == ref_tokens, f"program {program}: tokens differ from the reference"
    worst = max(abs(a - b) for a, b in zip(logprobs, ref_logprobs))
    assert worst <= TOLERANCE, f"program {program}: max |dlogprob| {worst:.2e}"


def assert_mixed_batch_matches_reference(llm, reference):
    """Every program of PROGRAMS on its own prompt (lengths PROMPT_LENGTHS), in one batch."""
    programs = list(PROGRAMS.values())
    prompts = [prompt_ids(i, n) for i, n in enumerate(PROMPT_LENGTHS)]
    results = generate(llm, prompts, [greedy(p) for p in programs])
    for prompt, program, result in zip(prompts, programs, results):
        assert len(result[0]) == 16
        assert_matches_reference(reference, prompt, program, result)


def test_mixed_programs_in_one_batch_match_reference(family_engine, references):
    family, llm = family_engine
    assert_mixed_batch_matches_reference(llm, references(family))


def test_programs_sharing_a_prefix_on_one_prompt_match_reference(family_engine, references):
    """One prompt under programs that agree on their first steps, the identity twice, all
    prefilled in one step: the rows share their common steps in the prefill, and in decoding
    while their tokens agree."""
    family, llm = family_engine
    prompt = prompt_ids(5, 6)
    names = ("identity", "segment_repeat", "repeat", "skip", "identity")
    programs = [PROGRAMS[name] for name in names]
    results = generate(llm, [prompt] * len(programs), [greedy(p) for p in programs])
    for program, result in zip(programs, results):
        assert_matches_reference(references(family), prompt, program, result)


def test_request_without_program_runs_identity(family_engine, references):
    family, llm = family_engine
    prompt = prompt_ids(9, 20)
    [result] = generate(llm, [prompt], [greedy(None)])
    assert_matches_reference(references(family), prompt, PROGRAMS["identity"], result)


LOOPS_AT_THREE_PLACES = (
    (0, 1, 2, 3, 1, 2, 3, 4, 5),
    (0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5),
    (0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5),
)


def plan_as_on_a_cpu(worker) -> None:
    """Give the runner the costs an engine measures on a real CPU (a layer run ~10 ms), under
    which the planner tries the merged order; the tiny models' layer runs cost far less."""
    runner = worker.model_runner
    config = polar_config.from_additional_config(runner.vllm_config.additional_config)
    runner.polar_planner = polar_runner.Planner(config, Costs(layer_run=1e-2, call=0, build=0))


def test_programs_planned_in_the_merged_order_match_reference(checkpoints, references, monkeypatch):
    """Three programs that loop back at different places decode in 12 rounds a step merged,
    where by layer takes 20 and by step 23."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the runner in this process
    rounds = []
    build_plan = polar_runner.build_plan

    def recorded(programs, *args, **kwargs):
        plan = build_plan(programs, *args, **kwargs)
        rounds.append((len(set(programs)), len(plan.rounds)))
        return plan

    monkeypatch.setattr(polar_runner, "build_plan", recorded)
    llm = start_engine(checkpoints("qwen3"), {"max_steps": MAX_STEPS})
    try:
        llm.collective_rpc(plan_as_on_a_cpu)
        prompts = [prompt_ids(20 + i, 7 + 5 * i) for i in range(3)]
        programs = list(LOOPS_AT_THREE_PLACES)
        results = generate(llm, prompts, [greedy(p) for p in programs])
    finally:
        stop_engine(llm)
    assert (3, 12) in rounds and (3, 20) not in rounds
    for prompt, program, result in zip(prompts, programs, results):
        assert_matches_reference(references("qwen3"), prompt, program, result)


def test_output_does_not_depend_on_the_rest_of_the_batch(qwen3_engine):
    programs = list(PROGRAMS.values())
    prompts = [prompt_ids(i, n) for i, n in enumerate(PROMPT_LENGTHS)]
    batched = generate(qwen3_engine, prompts, [greedy(p) for p in programs])
    for prompt, program, (tokens, logprobs) in zip(prompts, programs, batched):
        [(solo_tokens, solo_logprobs)] = generate(qwen3_engine, [prompt], [greedy(program)])
        assert solo_tokens == tokens
        assert max(abs(a - b) for a, b in zip(logprobs, solo_logprobs)) <= TOLERANCE


def test_identity_program_gives_stock_vllm_tokens(qwen3_engine, checkpoints):
    prompts = [prompt_ids(i, n) for i, n in enumerate(PROMPT_LENGTHS)]
    polar = generate(qwen3_engine, prompts, [greedy(PROGRAMS["identity"])] * len(prompts))
    stock = start_engine(checkpoints("qwen3"), None, enforce_eager=True)
    try:
        expected = generate(stock, prompts, [greedy(None)] * len(prompts))
        blocks_stock = stock.llm_engine.vllm_config.cache_config.num_gpu_blocks
    finally:
        stop_engine(stock)
    assert [tokens for tokens, _ in polar] == [tokens for tokens, _ in expected]
    # Same KV memory: the PoLar pool's pages, one per slot per block, hold at the identity
    # (D pages per block) as many tokens as stock's blocks (one page per layer each).
    pages_polar = qwen3_engine.llm_engine.vllm_config.cache_config.num_gpu_blocks
    assert pages_polar // NUM_LAYERS == pytest.approx(blocks_stock, rel=0.01)


def test_prefix_cache_is_keyed_by_program(qwen3_engine, references):
    prompt = prompt_ids(11, 230)
    reference = references("qwen3")
    first, second = PROGRAMS["segment_repeat"], PROGRAMS["skip"]
    for program in (first, second, first):
        [output] = qwen3_engine.generate(
            [{"prompt_token_ids": prompt}], [greedy(program)], use_tqdm=False
        )
        completion = output.outputs[0]
        tokens = list(completion.token_ids)
        logprobs = [step[t].logprob for step, t in zip(completion.logprobs, tokens)]
        assert_matches_reference(reference, prompt, program, (tokens, logprobs))
        if program is second:
            assert output.num_cached_tokens == 0, "program B reused program A's blocks"
    # The repeated program A still hits its own cached prefix.
    assert output.num_cached_tokens > 0


def test_a_user_salt_cannot_reach_a_programs_cached_blocks(qwen3_engine, references):
    """An identity request whose user salt is exactly the salt PoLar gave program A's blocks
    computes the identity afresh, not from A's KV."""
    prompt = prompt_ids(12, 230)
    program = PROGRAMS["skip"]
    forged = cache_salt(program, None, NUM_LAYERS)
    qwen3_engine.generate([{"prompt_token_ids": prompt}], [greedy(program)], use_tqdm=False)
    [output] = qwen3_engine.generate(
        [{"prompt_token_ids": prompt, "cache_salt": forged}],
        [greedy(PROGRAMS["identity"])],
        use_tqdm=False,
    )
    completion = output.outputs[0]
    tokens = list(completion.token_ids)
    logprobs = [step[t].logprob for step, t in zip(completion.logprobs, tokens)]
    assert output.num_cached_tokens == 0
    assert_matches_reference(references("qwen3"), prompt, PROGRAMS["identity"], (tokens, logprobs))

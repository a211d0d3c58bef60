"""Per-request programs offline: defaults, validation errors, prefix-cache salt."""

from __future__ import annotations

import pytest
from vllm.exceptions import VLLMValidationError

from tests.runtime.conftest import PROGRAMS, generate, greedy, prompt_ids
from vllm_polar.runtime.requests import cache_salt


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ([0, 1, 6], r"polar_program\[2\] = 6 is out of range.*\[0, 5\]"),
        ([-1], r"polar_program\[0\] = -1 is out of range"),
        ([], "polar_program must not be empty"),
        (["0"], r"polar_program\[0\] must be an int"),
        (list(range(6)) * 3, "polar_program has 18 steps.*max_steps = 12"),
        (3, "polar_program must be a list"),
    ],
)
def test_bad_program_is_rejected_offline_and_engine_keeps_serving(qwen3_engine, program, message):
    with pytest.raises(VLLMValidationError, match=message):
        generate(qwen3_engine, [prompt_ids(0, 8)], [greedy(program)])
    [(tokens, _)] = generate(qwen3_engine, [prompt_ids(0, 8)], [greedy(PROGRAMS["skip"])])
    assert len(tokens) == 16


def test_cache_salt_combines_program_and_user_salt():
    identity = PROGRAMS["identity"]
    assert cache_salt(identity, None, 6) is None
    assert cache_salt(identity, "user", 6) == "user"
    assert cache_salt((0, 1, 1), None, 6) == "polar:0-1,1"
    assert cache_salt((0, 1, 1), "user", 6) == "user|polar:0-1,1"
    assert cache_salt((0, 1, 1), "user", 6) != cache_salt((0, 1, 2), "user", 6)


def test_greedy_n_above_one_is_left_to_polar_engines():
    from vllm import SamplingParams

    from vllm_polar import register
    from vllm_polar.patches.sampling_params import check_greedy_n

    register()
    params = SamplingParams(n=3, temperature=0)  # PoLar runs it under three programs
    with pytest.raises(VLLMValidationError, match="n must be 1 when using greedy sampling"):
        check_greedy_n(params)  # what an engine without PoLar still answers
    check_greedy_n(SamplingParams(n=3, temperature=0.8))

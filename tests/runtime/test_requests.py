"""Per-request programs offline: defaults, validation errors, prefix-cache salt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vllm.exceptions import VLLMValidationError
from vllm.inputs import TokensPrompt

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


def test_cache_salt_shares_identity_and_separates_programs():
    identity = PROGRAMS["identity"]
    assert cache_salt(identity, None, 6) is None
    assert cache_salt(identity, "user", 6) == "user"
    assert cache_salt((0, 1, 1), None, 6) != cache_salt((0, 1, 2), None, 6)
    assert cache_salt((0, 1, 1), "user", 6) != cache_salt((0, 1, 1), None, 6)


def test_the_reported_salt_collision_is_gone():
    """Before, an identity request salted ``polar:0-3`` shared program 0-3's blocks."""
    program = (0, 1, 2, 3)
    for forged in ("polar:0-3", cache_salt(program, None, 6)):
        assert cache_salt(PROGRAMS["identity"], forged, 6) != cache_salt(program, None, 6)


layer_programs = st.one_of(
    st.just(PROGRAMS["identity"]), st.lists(st.integers(0, 5), min_size=1, max_size=8).map(tuple)
)


@st.composite
def salted(draw):
    """(program, user salt); salts include ones copied from what PoLar writes (forgeries)."""
    program = draw(layer_programs)
    salt = draw(
        st.one_of(
            st.none(),
            st.text(max_size=12),
            st.builds(
                lambda p, s: cache_salt(p, s, 6), layer_programs, st.none() | st.text(max_size=6)
            ),
        )
    )
    return program, salt


@given(salted(), salted())
def test_cache_salt_is_one_to_one(first, second):
    if cache_salt(*first, 6) == cache_salt(*second, 6):
        assert first == second


def test_greedy_n_above_one_is_left_to_polar_engines():
    from vllm import SamplingParams

    from vllm_polar import register
    from vllm_polar.patches.sampling_params import check_greedy_n

    register()
    params = SamplingParams(n=3, temperature=0)  # PoLar runs it under three programs
    with pytest.raises(VLLMValidationError, match="n must be 1 when using greedy sampling"):
        check_greedy_n(params)  # what an engine without PoLar still answers
    check_greedy_n(SamplingParams(n=3, temperature=0.8))


@pytest.mark.parametrize("program", [[0, 99], [-1, 2], list(range(6)) * 3])
def test_a_bad_program_that_reaches_the_engine_core_fails_that_request_alone(qwen3_engine, program):
    """A request handed to the engine as an ``EngineCoreRequest`` skips the front end's checks;
    the engine core checks again, fails it alone, and serves its neighbour."""
    engine = qwen3_engine.llm_engine
    prompt = TokensPrompt(prompt_token_ids=prompt_ids(0, 8))
    request = engine.input_processor.process_inputs(
        "bad", prompt, greedy(PROGRAMS["skip"]), supported_tasks=engine.get_supported_tasks()
    )
    request.sampling_params.extra_args["polar_program"] = program
    engine.add_request("bad", request, None)
    engine.add_request("good", prompt, greedy(PROGRAMS["skip"]))
    finished = {}
    while engine.has_unfinished_requests():
        finished |= {output.request_id: output for output in engine.step() if output.finished}
    assert finished["bad"].outputs[0].finish_reason == "error"
    [(expected, _)] = generate(qwen3_engine, [prompt_ids(0, 8)], [greedy(PROGRAMS["skip"])])
    assert list(finished["good"].outputs[0].token_ids) == expected

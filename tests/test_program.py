"""Program algebra: validation and text form (property tests)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vllm_polar.program import (
    ProgramError,
    format_program,
    identity,
    num_steps,
    num_unique_layers,
    parse_program,
    validate,
)

programs = st.lists(st.integers(0, 40), min_size=1, max_size=60).map(tuple)


def test_identity_and_counts():
    assert identity(4) == (0, 1, 2, 3)
    assert num_steps((0, 1, 1, 3)) == 4
    assert num_unique_layers((0, 1, 1, 3)) == 3


@given(programs)
def test_text_form_round_trips(program):
    text = format_program(program)
    assert parse_program(text) == program
    assert format_program(parse_program(text)) == text


def test_text_form_examples():
    assert format_program(identity(24)) == "0-23"
    assert format_program((0, 1, 2, 3, 4, 5, 4, 5, 6)) == "0-5,4-6"
    assert format_program((0, 1, 2, 3, 4, 5, 4, 5, 4, 5, 6)) == "0-5,4-5,4-6"
    assert format_program((3, 4, 3, 4, 3, 4)) == "3-4x3"
    assert parse_program("0-3, 4-5x2, 6") == (0, 1, 2, 3, 4, 5, 4, 5, 6)
    assert format_program((5, 4, 3)) == "5,4,3"


@pytest.mark.parametrize("text", ["", "a", "3-1", "1x0", "1-", "1,,2"])
def test_bad_text_is_rejected(text):
    with pytest.raises(ProgramError):
        parse_program(text)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must not be empty"),
        ("0,1", "must be a list"),
        (5, "must be a list"),
        ([0, 1.5], r"polar_program\[1\] must be an int"),
        ([0, True], r"polar_program\[1\] must be an int"),
        ([0, -1], r"\[0, 7\]"),
        ([0, 8], r"\[0, 7\]"),
        (list(range(8)) * 2, "max_steps = 10"),
    ],
)
def test_validate_names_field_and_limit(value, message):
    with pytest.raises(ProgramError, match=message) as excinfo:
        validate(value, num_layers=8, max_steps=10)
    assert "polar_program" in str(excinfo.value)


def test_validate_returns_tuple():
    assert validate([0, 1, 1], num_layers=2, max_steps=3) == (0, 1, 1)

"""Program algebra: validation, segment form, text form (property tests)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vllm_polar.program import (
    K_MAX,
    Op,
    ProgramError,
    format_program,
    from_segments,
    identity,
    num_steps,
    num_unique_layers,
    parse_program,
    to_segments,
    validate,
)


@st.composite
def segment_forms(draw, max_layers=12):
    """Random (boundaries, ops) with segments of length <= K_MAX."""
    num_layers = draw(st.integers(1, max_layers))
    lengths = []
    while sum(lengths) < num_layers:
        lengths.append(draw(st.integers(1, min(K_MAX, num_layers - sum(lengths)))))
    boundaries = []
    for length in lengths:
        boundaries += [True] + [False] * (length - 1)
    ops = draw(st.lists(st.sampled_from(list(Op)), min_size=len(lengths), max_size=len(lengths)))
    return boundaries, ops


programs = st.lists(st.integers(0, 40), min_size=1, max_size=60).map(tuple)


def test_identity_and_counts():
    assert identity(4) == (0, 1, 2, 3)
    assert num_steps((0, 1, 1, 3)) == 4
    assert num_unique_layers((0, 1, 1, 3)) == 3


def test_segments_compute_skip_keep_repeat():
    program = from_segments([1, 0, 1, 1, 0, 0], [Op.KEEP, Op.SKIP, Op.REPEAT])
    assert program == (0, 1, 3, 4, 5, 3, 4, 5)


def test_segment_longer_than_k_max_is_rejected():
    with pytest.raises(ProgramError, match="K_MAX"):
        from_segments([1, 0, 0, 0, 0], [Op.KEEP])


def test_program_without_segment_form_is_reported():
    assert to_segments((1, 0), 2) is None  # reversed order
    assert to_segments((0, 0, 0), 1) is None  # three passes of a layer
    assert to_segments((0, 1, 2, 3, 4, 0, 1, 2, 3, 4), 5) is None  # loop longer than K_MAX


def test_canonical_segment_form_uses_fewest_segments():
    form = to_segments(identity(8), 8)
    assert form.ops == (Op.KEEP, Op.KEEP)
    assert form.segments() == [(0, 4), (4, 8)]


@given(segment_forms())
def test_segment_form_round_trips_through_program(form):
    boundaries, ops = form
    program = from_segments(boundaries, ops)
    parsed = to_segments(program, len(boundaries))
    assert parsed is not None
    assert parsed.to_program() == program
    assert len(parsed.ops) <= len(ops)


@given(programs)
def test_text_form_round_trips(program):
    text = format_program(program)
    assert parse_program(text) == program
    assert format_program(parse_program(text)) == text


@given(programs)
def test_to_segments_is_exact_when_found(program):
    num_layers = max(program) + 1
    form = to_segments(program, num_layers)
    if form is not None:
        assert form.to_program() == program
        assert all(end - start <= K_MAX for start, end in form.segments())


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

"""The predictor's segment form: skip/keep/repeat segments and the canonical form of a program."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polar.predictor.segments import K_MAX, Op, from_segments, to_segments
from vllm_polar.program import ProgramError, identity

programs = st.lists(st.integers(0, 40), min_size=1, max_size=60).map(tuple)


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
def test_to_segments_is_exact_when_found(program):
    num_layers = max(program) + 1
    form = to_segments(program, num_layers)
    if form is not None:
        assert form.to_program() == program
        assert all(end - start <= K_MAX for start, end in form.segments())

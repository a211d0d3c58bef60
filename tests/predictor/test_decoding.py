"""Decoding: boundary enforcement and the op beam against brute-force enumeration."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polar.predictor.decoding import (
    boundary_log_prob,
    decode,
    decode_batch,
    decode_boundaries,
)
from polar.predictor.segments import K_MAX, Op, from_segments
from vllm_polar.program import format_program


def valid_mask(mask) -> bool:
    starts = [i for i, b in enumerate(mask) if b] + [len(mask)]
    return bool(mask[0]) and all(b - a <= K_MAX for a, b in zip(starts, starts[1:]))


def brute_force(boundary_logits, op_logits, threshold, min_steps, max_steps, penalty):
    """Every op sequence over the decoded boundaries within the budget: program -> score."""
    boundaries = decode_boundaries(boundary_logits.copy(), threshold)
    starts = np.flatnonzero(boundaries)
    log_probs = op_logits[starts] - np.logaddexp.reduce(op_logits[starts], axis=1)[:, None]
    base = boundary_log_prob(boundary_logits, boundaries)
    scores = {}
    for ops in itertools.product(list(Op), repeat=len(starts)):
        program = from_segments(boundaries, ops)
        if min_steps <= len(program) <= max_steps:
            score = base + sum(log_probs[j, op] for j, op in enumerate(ops))
            scores[program] = score - penalty * len(program)
    return scores


logits = st.floats(-4.0, 4.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    num_layers=st.integers(1, 9),
    k=st.integers(1, 8),
    threshold=st.sampled_from([0.2, 0.5, 0.8]),
    penalty=st.sampled_from([0.0, 0.05, -0.05, 0.5]),
)
def test_decode_equals_brute_force(data, num_layers, k, threshold, penalty):
    boundary_logits = np.array(
        data.draw(st.lists(logits, min_size=num_layers, max_size=num_layers))
    )
    op_logits = np.array(
        data.draw(st.lists(logits, min_size=3 * num_layers, max_size=3 * num_layers))
    ).reshape(num_layers, 3)
    max_steps = data.draw(st.integers(1, 2 * num_layers))
    min_steps = data.draw(st.integers(1, max_steps))
    got = decode(
        boundary_logits,
        op_logits,
        k,
        threshold=threshold,
        min_steps=min_steps,
        max_steps=max_steps,
        length_penalty=penalty,
    )
    scores = brute_force(boundary_logits, op_logits, threshold, min_steps, max_steps, penalty)
    best_scores = sorted(scores.values(), reverse=True)[:k]
    assert [c.score for c in got] == pytest.approx(best_scores, abs=1e-9)
    assert len({c.program for c in got}) == len(got)  # distinct
    for candidate in got:  # each is a feasible program with its brute-force score
        assert candidate.score == pytest.approx(scores[candidate.program], abs=1e-9)
        assert candidate.text == format_program(candidate.program)


@settings(max_examples=200, deadline=None)
@given(st.lists(logits, min_size=1, max_size=11), st.sampled_from([0.2, 0.5, 0.8]))
def test_boundaries_fewest_insertions(boundary_logits, threshold):
    boundary_logits = np.array(boundary_logits)
    decoded = decode_boundaries(boundary_logits.copy(), threshold)
    wanted = boundary_logits > np.log(threshold / (1 - threshold))
    wanted[0] = True
    assert valid_mask(decoded)
    assert np.all(decoded[wanted])  # keeps every thresholded boundary
    supersets = [
        mask
        for tail in itertools.product([False, True], repeat=len(wanted) - 1)
        if valid_mask(mask := np.array((True, *tail))) and np.all(mask[wanted])
    ]
    assert decoded.sum() == min(mask.sum() for mask in supersets)


def test_long_run_gets_boundaries_every_k_max_layers():
    boundaries = decode_boundaries(np.full(10, -5.0))
    assert boundaries.tolist() == [i % K_MAX == 0 for i in range(10)]


def test_confident_logits_decode_their_program():
    boundary_logits = np.array([9.0, -9, 9, -9, -9, 9])
    op_logits = np.full((6, 3), -9.0)
    op_logits[[0, 2, 5], [Op.KEEP, Op.REPEAT, Op.SKIP]] = 9.0
    best = decode(boundary_logits, op_logits, k=3)
    assert best[0].program == (0, 1, 2, 3, 4, 2, 3, 4)
    assert best[0].text == "0-4,2-4"
    assert best[0].score > best[1].score >= best[2].score


def test_budget_that_no_program_fits_gives_no_candidates():
    # boundaries at 0 and 4: step counts are sums of {0, 4, 8} and {0, 4, 8}
    boundary_logits = np.array([9.0, -9, -9, -9, 9, -9, -9, -9])
    assert decode(boundary_logits, np.zeros((8, 3)), k=5, min_steps=5, max_steps=7) == []


def test_empty_program_is_never_decoded():
    op_logits = np.zeros((4, 3))
    op_logits[:, Op.SKIP] = 20.0
    best = decode(np.full(4, 9.0), op_logits, k=3)
    assert all(len(c.program) >= 1 for c in best)


def test_decode_batch_matches_rows():
    generator = torch.Generator().manual_seed(0)
    boundary_logits = torch.randn(3, 7, generator=generator)
    op_logits = torch.randn(3, 7, 3, generator=generator)
    batch = decode_batch(boundary_logits, op_logits, k=4, max_steps=9)
    for row, candidates in enumerate(batch):
        assert candidates == decode(
            boundary_logits[row].double().numpy(),
            op_logits[row].double().numpy(),
            k=4,
            max_steps=9,
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"k": 0}, "k must be"),
        ({"threshold": 1.0}, "threshold"),
        ({"min_steps": 0}, "min_steps"),
        ({"min_steps": 5, "max_steps": 4}, "min_steps"),
    ],
)
def test_bad_options(options, message):
    options = {"k": 2, **options}
    with pytest.raises(ValueError, match=message):
        decode(np.zeros(4), np.zeros((4, 3)), **options)

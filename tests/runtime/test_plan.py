"""The routing plan runs every token through its own program, in order, on the right slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vllm_polar.runtime.plan import build_plan, uniform_plan

DEPTH = 24
programs = st.lists(st.integers(0, DEPTH - 1), min_size=1, max_size=30).map(tuple)
batches = st.lists(
    st.tuples(programs, st.sampled_from([1, 2, 5, 600])), min_size=1, max_size=8
)  # rows of 1-5 tokens (decode, short prefill) and 600 (long prefill) select both orders
MIXED = [
    tuple(range(18)),
    (*range(10), *range(15, 24)),
    tuple(range(21)),
    (*range(12), *range(13, 24)),
    (*range(24), 23),
    (*range(16), *range(13, 24)),
    (*range(14), *range(9, 24)),
    (*range(14), *range(8, 24)),
]


def plan_for(batch):
    rows = [program for program, _ in batch]
    qsl = np.concatenate([[0], np.cumsum([size for _, size in batch])])
    return rows, qsl, build_plan(rows, qsl, torch.device("cpu"))


def members(plan, part, everyone: list[int]) -> list[int]:
    return everyone if part.tokens is None else plan.indices(part).tolist()


def trace(plan, num_tokens: int) -> list[list[tuple[int, int]]]:
    """Per token, the (layer, slot) of each round it takes part in, in round order."""
    seen: list[list[tuple[int, int]]] = [[] for _ in range(num_tokens)]
    for this_round in plan.rounds:
        layer_of = {
            t: group.layer
            for group in this_round.groups
            for t in members(plan, group, list(range(num_tokens)))
        }
        for call in this_round.calls:
            for t in members(plan, call, sorted(layer_of)):
                seen[t].append((layer_of.pop(t), call.slot))
        assert not layer_of  # every token that ran a layer took part in an attention call
    return seen


@given(batches)
def test_every_token_runs_its_program_in_order_on_slot_per_step(batch):
    rows, qsl, plan = plan_for(batch)
    seen = trace(plan, int(qsl[-1]))
    for row, program in enumerate(rows):
        for token in range(qsl[row], qsl[row + 1]):
            assert seen[token] == [(layer, step) for step, layer in enumerate(program)]


@given(batches)
def test_a_call_over_part_of_the_batch_describes_exactly_its_requests(batch):
    rows, qsl, plan = plan_for(batch)
    for this_round in plan.rounds:
        for call in this_round.calls:
            if call.tokens is None:
                assert len(this_round.calls) == 1
                continue
            call_rows = plan.host_index[call.rows].tolist()
            assert call_rows == sorted(call_rows)
            assert {rows[r] for r in call_rows} != set(rows)
            assert all(len(rows[r]) > call.slot for r in call_rows)
            ranges = [list(range(qsl[r], qsl[r + 1])) for r in call_rows]
            assert plan.indices(call).tolist() == sum(ranges, [])
            assert (
                plan.host_index[call.starts].tolist() == np.cumsum([0, *map(len, ranges)]).tolist()
            )
    assert plan.call_attention == {}  # filled in by the runner


def test_decoding_mixed_programs_reads_each_layer_about_once():
    """Eight programs of mean length 24, one decode token each: by layer, 34 layer runs
    where running step k of all programs at once needs 87."""
    _, _, plan = plan_for([(p, 1) for p in MIXED])
    assert sum(len(this_round.groups) for this_round in plan.rounds) == 34
    assert (
        sum(this_round.groups[0].tokens is None for this_round in plan.rounds) == 10
    )  # layers 0-9


@pytest.mark.parametrize("tokens_per_row", [1, 600])
def test_programs_in_opposite_orders_run_by_step(tokens_per_row):
    """By layer would save one layer run of 48 for 24 extra attention calls."""
    forward, backward = tuple(range(24)), tuple(reversed(range(24)))
    _, _, plan = plan_for([(forward, tokens_per_row), (backward, tokens_per_row)])
    assert len(plan.rounds) == 24
    assert all(len(this_round.calls) == 1 for this_round in plan.rounds)


def test_one_program_for_all_rows_is_the_uniform_plan():
    program = (0, 1, 1, 2, 5)
    plan = build_plan([program, program], np.array([0, 3, 7]), torch.device("cpu"))
    assert plan == uniform_plan(program)
    assert plan.token_index is None
    assert [
        (this_round.groups[0].layer, this_round.calls[0].slot) for this_round in plan.rounds
    ] == [
        (0, 0),
        (1, 1),
        (1, 2),
        (2, 3),
        (5, 4),
    ]

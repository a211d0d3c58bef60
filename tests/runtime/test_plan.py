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


# Rows that share a history (same tokens: same prompt, same size) and programs that share
# prefixes of every length: a prefix from a small pool, then a free tail.
PREFIXES = [(), tuple(range(9)), (0, 1, 2, 2, 3), (0, 1, 2, 3, 0)]
tails = st.lists(st.integers(0, DEPTH - 1), max_size=12).map(tuple)
prefix_programs = st.tuples(st.sampled_from(PREFIXES), tails).map(lambda pt: (pt[0] + pt[1])[:30])
shared_batches = st.lists(
    st.tuples(
        prefix_programs.filter(len), st.sampled_from([1, 5, 600]), st.sampled_from([None, 0, 1])
    ),
    min_size=1,
    max_size=8,
)


def plan_for(batch):
    rows = [program for program, *_ in batch]
    qsl = np.concatenate([[0], np.cumsum([size for _, size, *_ in batch])])
    histories = [history_of(row) for row in batch]
    return rows, qsl, build_plan(rows, qsl, torch.device("cpu"), histories)


def history_of(row) -> tuple[int, int] | None:
    """Rows of one prompt id and size hold the same tokens (None: a history of its own)."""
    if len(row) < 3 or row[2] is None:
        return None
    return row[2], row[1]


def members(plan, part, everyone: list[int]) -> list[int]:
    if part.tokens is None:
        return everyone
    copied = plan.copies(part)[0].tolist() if getattr(part, "copies", None) else []
    return plan.indices(part).tolist() + copied


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


@given(st.one_of(batches, shared_batches))
def test_every_token_runs_its_program_in_order_on_slot_per_step(batch):
    """Also where rows share a history: a copied step counts as run."""
    rows, qsl, plan = plan_for(batch)
    seen = trace(plan, int(qsl[-1]))
    for row, program in enumerate(rows):
        for token in range(qsl[row], qsl[row + 1]):
            assert seen[token] == [(layer, step) for step, layer in enumerate(program)]


@given(shared_batches)
def test_a_copied_step_comes_from_a_row_with_the_same_history_and_program_prefix(batch):
    rows, qsl, plan = plan_for(batch)
    row_of = np.repeat(np.arange(len(rows)), np.diff(qsl))
    step_of_token = [0] * int(qsl[-1])
    for this_round in plan.rounds:
        computed = {
            t for group in this_round.groups for t in members(plan, group, list(range(qsl[-1])))
        }
        for group in this_round.groups:
            if group.copies is None:
                continue
            own = set(plan.indices(group).tolist())
            for target, source in zip(*(t.tolist() for t in plan.copies(group))):
                step = step_of_token[target]
                target_row, source_row = row_of[target], row_of[source]
                assert source in own and target not in own
                assert source_row < target_row
                assert history_of(batch[source_row]) == history_of(batch[target_row]) is not None
                assert rows[source_row][: step + 1] == rows[target_row][: step + 1]
                assert target - qsl[target_row] == source - qsl[source_row]
        for t in computed:
            step_of_token[t] += 1


def test_rows_of_one_history_compute_their_common_prefix_once():
    """One 40-token prompt under the identity, a skip of layer 9 and a repeat of layer 12:
    by layer, layers 0-9 run once on 40 tokens for all three, 10-12 on 80 (the identity and
    the repeat still agree), the repeat's second 12 alone, 13-23 on all 120."""
    base = tuple(range(24))
    programs = [base, (*base[:9], *base[10:]), (*base[:13], 12, *base[13:])]
    rows, qsl, plan = plan_for([(p, 40, 0) for p in programs])
    computed = [
        sum(40 if g.tokens is None else len(plan.indices(g)) for g in this_round.groups)
        for this_round in plan.rounds
    ]
    assert computed == [40] * 10 + [80] * 3 + [40] + [120] * 11
    seen = trace(plan, 120)
    for row, program in enumerate(rows):
        assert seen[40 * row] == [(layer, step) for step, layer in enumerate(program)]


def test_rows_with_different_histories_share_nothing():
    program = tuple(range(24))
    _, _, plan = plan_for([(program, 40, 0), (program, 40, 1), (program, 40, None)])
    assert plan == uniform_plan(program)


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

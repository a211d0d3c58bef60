"""The routing plan runs every token through its own program, in order, on the right slots."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from vllm_polar.program import step_slots
from vllm_polar.runtime.plan import (
    DEFAULT_COSTS,
    MERGE_MIN_LAYER_RUN,
    Costs,
    ProgramTable,
    build_plan,
    by_layer_rounds,
    by_step_rounds,
    layout,
    merged_rounds,
    tabulate,
    uniform_plan,
)
from vllm_polar.runtime.plan_passes import by_layer_keys, dense_rank

DEPTH = 24
SLOTS = 30
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


def slots_of(program):
    return step_slots(program, DEPTH, SLOTS)


CPU_COSTS = Costs(layer_run=1e-2, call=1e-5, build=1e-5)
"""As the engine measures them on a CPU: the planner also tries the merged order."""


def plan_for(batch, costs: Costs = DEFAULT_COSTS):
    rows = [program for program, *_ in batch]
    qsl = np.concatenate([[0], np.cumsum([size for _, size, *_ in batch])])
    histories = [history_of(row) for row in batch]
    return rows, qsl, build_plan(rows, qsl, torch.device("cpu"), DEPTH, SLOTS, histories, costs)


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
        call = this_round.call
        called = members(plan, call, sorted(layer_of))
        slots = [call.slot] * len(called) if call.tokens is None else plan.token_slots(call)
        for t, slot in zip(called, slots, strict=True):
            seen[t].append((layer_of.pop(t), int(slot)))
        assert not layer_of  # every token that ran a layer took part in the attention call
    return seen


@given(st.one_of(batches, shared_batches), st.sampled_from([DEFAULT_COSTS, CPU_COSTS]))
def test_every_token_runs_its_program_in_order_on_slot_per_step(batch, costs):
    """Also where rows share a history: a copied step counts as run."""
    rows, qsl, plan = plan_for(batch, costs)
    seen = trace(plan, int(qsl[-1]))
    for row, program in enumerate(rows):
        for token in range(qsl[row], qsl[row + 1]):
            assert seen[token] == list(zip(program, slots_of(program), strict=True))


@given(shared_batches, st.sampled_from([DEFAULT_COSTS, CPU_COSTS]))
def test_a_copied_step_comes_from_a_row_with_the_same_history_and_program_prefix(batch, costs):
    rows, qsl, plan = plan_for(batch, costs)
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


@given(st.one_of(batches, shared_batches))
def test_a_rounds_groups_compute_its_calls_tokens_group_after_group(batch):
    """What lets the executor join the groups' q/k/v into the call's, without scattering."""
    _, _, plan = plan_for(batch)
    for this_round in plan.rounds:
        call = this_round.call
        if call.tokens is None or any(g.copies is not None for g in this_round.groups):
            continue
        joined = [t for group in this_round.groups for t in plan.indices(group).tolist()]
        assert joined == plan.indices(call).tolist()


def test_rows_of_one_history_compute_their_common_prefix_once():
    """One 40-token prompt under the identity, a skip of layer 9 and a repeat of layer 12:
    by layer, layers 0-9 run once on 40 tokens for all three, 10-12 on 80 (the identity and
    the repeat still agree), the repeat's second 12 alone, 13-23 on all 120."""
    base = tuple(range(24))
    programs = [base, (*base[:9], *base[10:]), (*base[:13], 12, *base[13:])]
    rows, qsl, plan = plan_for([(p, 40, 0) for p in programs])
    computed = [
        sum(120 if g.tokens is None else len(plan.indices(g)) for g in this_round.groups)
        for this_round in plan.rounds
    ]
    assert computed == [40] * 10 + [80] * 3 + [40] + [120] * 11
    seen = trace(plan, 120)
    for row, program in enumerate(rows):
        assert seen[40 * row] == list(zip(program, slots_of(program), strict=True))


def test_rows_with_different_histories_share_nothing():
    program = tuple(range(24))
    _, _, plan = plan_for([(program, 40, 0), (program, 40, 1), (program, 40, None)])
    assert plan == uniform_plan(program, slots_of(program))


@given(batches)
def test_a_call_over_part_of_the_batch_describes_exactly_its_requests(batch):
    """Each row once, on one of its program's slots, with its tokens; never the whole batch
    on one slot (that call takes the step's whole-batch metadata instead)."""
    rows, qsl, plan = plan_for(batch)
    region = plan.call_region
    calls = plan.partial_calls()
    places = [] if region is None else zip(region.call_rows.tolist(), region.call_starts.tolist())
    for call, ((r0, r1), (q0, q1)) in zip(calls, places, strict=True):
        call_rows = plan.host_index[region.rows][r0:r1].tolist()
        row_slots = plan.host_index[region.row_slots][r0:r1].tolist()
        assert len(set(call_rows)) == len(call_rows)
        assert len(call_rows) < len(rows) or len(set(row_slots)) > 1
        assert all(slot in slots_of(rows[r]) for r, slot in zip(call_rows, row_slots, strict=True))
        ranges = [list(range(qsl[r], qsl[r + 1])) for r in call_rows]
        assert plan.indices(call).tolist() == sum(ranges, [])
        token_slots = [slot for part, slot in zip(ranges, row_slots, strict=True) for _ in part]
        assert plan.token_slots(call).tolist() == token_slots
        starts = plan.host_index[region.starts][q0:q1].tolist()
        assert starts == np.cumsum([0, *map(len, ranges)]).tolist()
    assert plan.call_attention == {}  # filled in by the runner


@given(batches)
def test_the_call_region_lists_its_rows_and_tokens_slot_after_slot(batch):
    """What the runner reads to take each row's block table and each token's slot mapping from
    its own slot, one gather per slot."""
    _, _, plan = plan_for(batch)
    region = plan.call_region
    if region is None:
        return
    index = plan.host_index
    for part, place in (("row", region.rows), ("token", region.tokens)):
        order = index[getattr(region, f"{part}_order")]
        by_slot = index[getattr(region, f"{part}s_by_slot")]
        slots = index[getattr(region, f"{part}_slots")]
        assert sorted(order.tolist()) == list(range(place.stop - place.start))
        assert by_slot.tolist() == index[place][order].tolist()
        runs = region.slot_runs[:, [1, 2]] if part == "row" else region.slot_runs[:, [3, 4]]
        for slot, (start, end) in zip(region.slot_runs[:, 0], runs, strict=True):
            assert (slots[order[start:end]] == slot).all()
        assert sum(end - start for start, end in runs.tolist()) == len(order)


def test_decoding_mixed_programs_reads_each_layer_about_once():
    """Eight programs of mean length 24, one decode token each: by layer, 34 layer runs where
    running step k of all programs at once needs 87, in 34 rounds of one attention call each
    (the two loops back to 8 and to 9 re-run layers 9-13 together, from different slots, in
    one call); layers 0-9 and 15-17, which every program runs, are rounds over the whole
    batch."""
    _, _, plan = plan_for([(p, 1) for p in MIXED])
    assert sum(len(this_round.groups) for this_round in plan.rounds) == 34
    assert len(plan.rounds) == 34
    assert len(plan.partial_calls()) == 34 - 13
    whole = [r.groups[0].layer for r in plan.rounds if r.groups[0].tokens is None]
    assert whole == [*range(10), 15, 16, 17]


@given(
    batches,
    st.sampled_from([Costs(1, 0, 0), Costs(0, 1, 0), Costs(0, 0, 1), Costs(8, 1, 1), CPU_COSTS]),
)
def test_the_plan_takes_the_order_of_lower_cost(batch, costs):
    rows = [program for program, _ in batch]
    qsl = np.concatenate([[0], np.cumsum([size for _, size in batch])])
    plan = build_plan(rows, qsl, torch.device("cpu"), DEPTH, SLOTS, costs=costs)
    if len(set(rows)) == 1:
        return
    table = tabulate(rows, DEPTH, SLOTS)
    by_step, by_layer, merged = (
        layout(table, order(table), costs)
        for order in (by_step_rounds, by_layer_rounds, merged_rounds)
    )
    best = by_step if by_step.cost(costs) <= by_layer.cost(costs) else by_layer
    if costs.layer_run >= MERGE_MIN_LAYER_RUN and merged.cost(costs) < best.cost(costs):
        best = merged  # tried on devices where a layer run is dear, taken only if cheaper
    assert (
        sum(len(r.groups) for r in plan.rounds),
        len(plan.rounds),
        len(plan.partial_calls()),
    ) == (len(best.group_round), len(best.everyone), best.builds)


@given(st.lists(st.integers(0, 1 << 24), min_size=1, max_size=40))
def test_dense_rank_ranks_keys_as_a_sort_does(keys):
    keys = np.array(keys)
    rank, distinct = dense_rank(keys)
    expected_distinct, expected_rank = np.unique(keys, return_inverse=True)
    assert distinct.tolist() == expected_distinct.tolist()
    assert rank.tolist() == expected_rank.tolist()


@given(st.lists(programs, min_size=1, max_size=8))
def test_orders_of_one_layer_per_round_lay_out_as_the_general_ranking(batch):
    table = tabulate(batch, DEPTH, SLOTS)
    for order in (by_layer_rounds, merged_rounds):
        general = layout(table, order(table), CPU_COSTS)
        shortcut = layout(table, order(table), CPU_COSTS, layer_per_round=True)
        for name, expected in general._asdict().items():
            np.testing.assert_array_equal(getattr(shortcut, name), expected, err_msg=name)


@given(st.lists(programs, min_size=1, max_size=8))
def test_the_merged_order_runs_one_layer_per_round_and_each_program_in_order(batch):
    table = tabulate(batch, DEPTH, SLOTS)
    rounds = merged_rounds(table)
    for p in range(len(table.distinct)):
        assert (np.diff(rounds[table.program == p]) > 0).all()
    layers_of_round = {}
    for number, layer in zip(rounds.tolist(), table.layer.tolist(), strict=True):
        assert layers_of_round.setdefault(number, layer) == layer
    assert sorted(layers_of_round) == list(range(len(layers_of_round)))


def test_the_planner_on_a_cpu_takes_whichever_of_merged_and_by_layer_has_fewer_rounds():
    """(4, 3, 0, 2) is (3, 0, 2) after one more layer: by layer, that layer raises the highest
    layer reached, so the two loops back fall in different rounds (7); merged, they share
    them (4).  Identity programs that each run a different block of three layers twice: by
    layer, each loop catches up before the others go on (39 rounds); merged, the programs
    that did not loop there run ahead and each loop finishes alone (46)."""
    cases = {
        ((3, 0, 2), (4, 3, 0, 2)): (7, 4),
        tuple((*range(s + 3), *range(s, 24)) for s in range(0, 20, 4)): (39, 46),
    }
    for batch, expected in cases.items():
        table = tabulate(batch, DEPTH, SLOTS)
        rounds = tuple(
            len(layout(table, order(table), CPU_COSTS).everyone)
            for order in (by_layer_rounds, merged_rounds)
        )
        assert rounds == expected
        _, _, plan = plan_for([(program, 1) for program in batch], CPU_COSTS)
        assert len(plan.rounds) == min(expected)


def test_the_merged_order_lets_the_program_with_most_steps_left_lead():
    """After three rounds (layers 0, 0, 1) the longest program waits on its second 1 (4 steps
    left), the two others on 2 (3 steps left each).  Weighed by steps left, 2 would lead
    (3 + 3 > 4) and then run again after the longest program's 1 (9 rounds); weighed by their
    fourth power, the 1 leads (4**4 > 2 * 3**4) and the others are subsequences of the
    longest: 7 rounds."""
    batch = ((0, 0, 1, 1, 2, 3, 4), (0, 0, 1, 2, 3, 4), (0, 1, 2, 3, 4))
    table = tabulate(batch, DEPTH, SLOTS)
    rounds = merged_rounds(table)
    assert len(np.unique(rounds)) == 7
    assert rounds[table.program == 0].tolist() == list(range(7))


@given(st.lists(batches, min_size=1, max_size=4))
def test_programs_seen_before_plan_as_from_scratch(batch_list):
    """The engine's table of programs, shared across steps and starting over when full,
    gives every batch the plan a fresh table gives it."""
    table = ProgramTable(DEPTH, SLOTS, capacity=12)
    for batch in batch_list:
        rows = [program for program, _ in batch]
        qsl = np.concatenate([[0], np.cumsum([size for _, size in batch])])
        seen = build_plan(rows, qsl, torch.device("cpu"), DEPTH, SLOTS, table=table)
        fresh = build_plan(rows, qsl, torch.device("cpu"), DEPTH, SLOTS)
        assert seen.rounds == fresh.rounds
        assert (seen.host_index is None) == (fresh.host_index is None)
        if fresh.host_index is not None:
            assert seen.host_index.tolist() == fresh.host_index.tolist()
    assert len(table.programs) <= 12


@given(st.lists(st.lists(st.integers(0, DEPTH - 1), min_size=1, max_size=30), max_size=20))
def test_the_table_finds_each_program_whether_it_sees_the_same_object_or_an_equal_one(lists):
    """The table knows the objects it was given by their ids and keeps them alive, so a new
    object never takes an old one's id; equal programs get one id whatever their object."""
    table = ProgramTable(DEPTH, SLOTS, capacity=16)
    for _ in range(3):
        batch = [tuple(layers) for layers in lists]  # new objects each time
        for programs in (batch, batch[::-1], [tuple(p) for p in batch]):
            ids = table.lookup(programs).tolist()
            assert [table.programs[i] for i in ids] == programs
            assert len(set(ids)) == len(set(programs))
        del batch


def test_by_layer_keys_are_the_highest_layer_reached_the_loops_since_and_the_layer():
    """(0, 1, 2, 1, 2, 3): the loop back to 1 runs 1 and 2 at (2, 1, *) before 3 raises the
    highest layer reached again."""
    expected = [(0, 0, 0), (1, 0, 1), (2, 0, 2), (2, 1, 1), (2, 1, 2), (3, 0, 3), (3, 1, 3)]
    keys = by_layer_keys(np.array([0, 1, 2, 1, 2, 3, 3]), np.array([7]), DEPTH, SLOTS)
    assert keys.tolist() == [(h * (SLOTS + 1) + s) * DEPTH + layer for h, s, layer in expected]


def test_step_slots_put_first_runs_on_their_layer_and_repeats_past_the_depth():
    assert step_slots(tuple(range(24)), 24, 30) == tuple(range(24))
    assert step_slots((0, 1, 2, 1, 2, 3), 24, 30) == (0, 1, 2, 24, 25, 3)
    assert step_slots((5, 5, 5), 24, 30) == (5, 24, 25)
    assert step_slots((0, 0, 0), 3, 3) == (0, 1, 2)  # no slots past the depth: lowest free


@given(st.lists(programs, min_size=1, max_size=12), st.sampled_from([(24, 24), (24, 30), (4, 30)]))
def test_slot_table_matches_step_slots_and_every_program_gets_distinct_slots(batch, shape):
    """Batches of more and fewer new programs than FEW_PROGRAMS: both ways of tabulating."""
    depth, slots = shape
    batch = [tuple(layer % depth for layer in p)[:slots] for p in batch]
    table = tabulate(batch, depth, slots)
    for p, program in enumerate(table.distinct):
        expected = step_slots(program, depth, slots)
        assert table.slot[table.program == p].tolist() == list(expected)
        assert len(set(expected)) == len(program) and all(0 <= s < slots for s in expected)
        for k in range(len(program)):  # a step's slot depends only on the steps before it
            assert step_slots(program[: k + 1], depth, slots) == expected[: k + 1]


def test_one_program_for_all_rows_is_the_uniform_plan():
    program = (0, 1, 1, 2, 5)
    plan = build_plan([program, program], np.array([0, 3, 7]), torch.device("cpu"), DEPTH, SLOTS)
    assert plan == uniform_plan(program, slots_of(program))
    assert plan.token_index is None
    assert [(this_round.groups[0].layer, this_round.call.slot) for this_round in plan.rounds] == [
        (0, 0),
        (1, 1),
        (1, 24),
        (2, 2),
        (5, 5),
    ]

"""Per-forward routing plan: which tokens run which layer, in which order, on which KV slot.

Built on the host from the persistent batch (request order = token order) by array operations
over the batch's programs × steps, and shipped to the device in one transfer.  All tokens of a
request share its program, so every token set below is a union of whole requests' token
ranges.  While the batch keeps its requests and token counts (steady decode) the runner reuses
the plan (:mod:`vllm_polar.runtime.runner`).

A forward is a sequence of *rounds*.  A round runs the QKV of some layers for some tokens
(``groups``), then attention calls on slots (``calls``), then the layers' output projection and
MLP.  Step k of a program keeps its K/V in the slot :func:`vllm_polar.program.step_slots` gives
it (the first run of layer l in slot l).  An attention call covers exactly its own requests: one
over part of the batch gets attention metadata of those requests alone (built by the runner),
so it reads and writes nothing of the others and costs what its tokens cost.  Two orders of
rounds, each a round number per (program, step):

- *by step*: round k runs step k of every program, one group per distinct layer at step k and
  one call per distinct slot.  A layer run at different steps by different programs has its
  weights read once per step.
- *by layer*: a step's round is keyed by (the highest layer its program has reached, the loops
  back since then, its layer), in ascending order.  Every program runs the first time it
  reaches layer l in the round of layer l, in slot l, whatever it skipped before: one layer
  run and one call.  A program that looped back catches up (with the programs that make the
  same loop) before the others go on.  Eight programs of mean length 24 over 24 layers: 34
  layer runs instead of 87.

A batch of one program runs by step over the whole batch.  For mixed batches the plan takes
the order of lower cost: layer runs (a read of a layer's weights), attention calls (launches)
and metadata builds (one per call over part of the batch: its requests' rows of its slot's
block table),
weighed by :class:`Costs`, which the runner measures on the device at the engine's first step.

*Shared prefixes.*  Rows with the same token history (the runner says which: e.g. one prompt
prefilled under several programs) compute the same thing at step k as long as their programs
agree on steps 0..k.  There the lowest such row computes the step's QKV, output projection and
MLP, and the others copy its results; every row still takes part in the attention call, which
writes its own KV pages (read later, once the rows' tokens or programs part).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from vllm_polar.program import Program, step_slots


@dataclass(frozen=True)
class Costs:
    """Fixed costs, in seconds, of the parts of a forward on one device."""

    layer_run: float
    """One layer's norms, QKV, output projection and MLP on a decode batch (a weights read)."""
    call: float
    """The launches of one attention call over part of the batch (gathers, kernel, scatter)."""
    build: float
    """One attention-metadata build for a call over part of the batch."""


DEFAULT_COSTS = Costs(layer_run=8e-4, call=1e-4, build=1e-4)
"""Until measured (host-only planning): a layer run is worth eight calls, a build one call."""


class Group(NamedTuple):
    """Tokens that run ``layer`` in a round.  ``tokens`` slices :attr:`Plan.token_index`: the
    tokens the group computes; None means every token of the batch, in a round of this one group
    and one call.  ``copies`` (targets, sources), two slices of the same length: tokens of rows
    that share a program prefix take the results of these computed tokens instead."""

    layer: int
    tokens: slice | None
    copies: tuple[slice, slice] | None = None


class Call(NamedTuple):
    """An attention call on ``slot`` for the requests that keep this round's step there.

    None for the slices: every request of the batch.  Otherwise they slice
    :attr:`Plan.token_index`: ``tokens`` the requests' tokens in batch order, ``rows`` their
    batch rows, ``starts`` the offsets of their tokens within the call (one more
    than rows).  Calls of one forward over the same requests share the slices.
    """

    slot: int
    tokens: slice | None
    rows: slice | None
    starts: slice | None


class Round(NamedTuple):
    groups: tuple[Group, ...]
    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Plan:
    """Routing for one forward: its rounds in order.

    ``token_index`` is a (T,) int64 device tensor holding the index arrays of every group, copy
    and call that does not cover the whole batch, concatenated; ``host_index`` is its host copy.
    ``call_attention`` maps a call's (``tokens.start``, slot) to the attention metadata of its
    requests alone on its slot (filled in by the runner).  In a round of one group without
    copies, the group's tokens are its calls' tokens, call after call, so the calls can take
    runs of its rows.
    """

    rounds: list[Round]
    token_index: torch.Tensor | None
    host_index: np.ndarray | None = None
    call_attention: dict[tuple[int, int], object] = field(default_factory=dict)
    call_region: tuple[slice, slice, slice] | None = None
    """Where every call's (tokens, rows, starts) slices lie in ``token_index``."""
    expanded_tokens: int = 0
    """``token_index[:expanded_tokens]`` are token indices: every group's and call's tokens
    lie there, but for the copies of rows that share a program prefix."""

    def indices(self, part: Group | Call) -> torch.Tensor:
        """(n,) int64 token indices of a group or call over part of the batch."""
        assert self.token_index is not None and part.tokens is not None
        return self.token_index[part.tokens]

    def copies(self, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,) target and (n,) source token indices of a group's copies."""
        assert self.token_index is not None and group.copies is not None
        targets, sources = group.copies
        return self.token_index[targets], self.token_index[sources]

    def partial_calls(self) -> list[Call]:
        """The calls over part of the batch: each needs attention metadata of its own, its
        requests' rows of its slot's block table."""
        return [call for r in self.rounds for call in r.calls if call.tokens is not None]

    def call_metadata(self, call: Call) -> object:
        return self.call_attention[call.tokens.start, call.slot]


def uniform_plan(program: Program, slots: Sequence[int]) -> Plan:
    """Every token runs the same program: round k is step k over the whole batch."""
    return Plan(
        rounds=[
            Round((Group(layer, None),), (Call(slot, None, None, None),))
            for layer, slot in zip(program, slots, strict=True)
        ],
        token_index=None,
    )


class Programs(NamedTuple):
    """A batch's distinct programs as arrays: (P, W) tables, W the longest program's steps,
    and the same steps as flat *entries* (program-major, steps in order)."""

    layers: np.ndarray
    """(P, W) int64 layer of each step, -1 past the program's end."""
    valid: np.ndarray
    """(P, W) bool: the program has this step."""
    of_row: np.ndarray
    """(R,) int64: the program of each batch row."""
    distinct: list[Program]
    program: np.ndarray
    """(n,) program of each entry."""
    step: np.ndarray
    layer: np.ndarray
    slot: np.ndarray
    """(n,) KV slot of each entry (:func:`vllm_polar.program.step_slots`)."""
    num_slots: int


def tabulate(programs: Sequence[Program], num_layers: int, num_slots: int) -> Programs:
    codes: dict[Program, int] = {}
    of_row = np.fromiter(
        (codes.setdefault(p, len(codes)) for p in programs), np.int64, len(programs)
    )
    distinct = list(codes)
    lengths = np.fromiter(map(len, distinct), np.int64, len(distinct))
    valid = np.arange(lengths.max()) < lengths[:, None]
    layers = np.full(valid.shape, -1, np.int64)
    layer = np.fromiter(itertools.chain.from_iterable(distinct), np.int64)
    layers[valid] = layer
    program, step = np.nonzero(valid)
    slot = entry_slots(program, step, layer, lengths, num_layers, num_slots)
    return Programs(layers, valid, of_row, distinct, program, step, layer, slot, num_slots)


def entry_slots(
    program: np.ndarray,
    step: np.ndarray,
    layer: np.ndarray,
    lengths: np.ndarray,
    num_layers: int,
    num_slots: int,
) -> np.ndarray:
    """(n,) slots of all entries at once, equal to :func:`step_slots` program by program: a
    first run keeps its layer's slot, the r-th re-run takes D + r; a program whose re-runs
    overflow S takes the step-by-step rule."""
    first = np.full(len(lengths) * num_layers, lengths.max())
    np.minimum.at(first, program * num_layers + layer, step)
    rerun = step > first[program * num_layers + layer]
    starts = np.cumsum(lengths) - lengths
    before = np.cumsum(rerun) - rerun
    slot = np.where(rerun, num_layers + before - before[starts][program], layer)
    for p in np.unique(program[slot >= num_slots]).tolist():
        span = slice(starts[p], starts[p] + lengths[p])
        slot[span] = step_slots(layer[span].tolist(), num_layers, num_slots)
    return slot


def by_step_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the by-step order: its step."""
    return programs.step


def by_layer_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the by-layer order (module docstring)."""
    layers, valid = programs.layers, programs.valid
    width = layers.shape[1]
    high = np.maximum.accumulate(layers, axis=1)
    reached = np.ones_like(valid)
    reached[:, 1:] = layers[:, 1:] > high[:, :-1]
    back = np.zeros_like(valid)
    back[:, 1:] = layers[:, 1:] <= layers[:, :-1]
    loops = np.cumsum(back, axis=1)
    since = loops - np.maximum.accumulate(np.where(reached, loops, 0), axis=1)
    num_layers = int(layers.max()) + 1
    return ((high * (width + 1) + since) * num_layers + layers)[valid]


def dense_rank(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each key among the distinct keys, the distinct keys ascending)."""
    size = int(keys.max()) + 1
    if size > 8 * len(keys) + 4096:
        distinct, rank = np.unique(keys, return_inverse=True)
        return rank.reshape(-1), distinct
    present = np.zeros(size, bool)
    present[keys] = True
    return (np.cumsum(present) - 1)[keys], np.flatnonzero(present)


def grouped(ids: np.ndarray) -> np.ndarray:
    """Stable order of ``ids`` (small non-negative ints): a counting sort where it fits."""
    kind = np.int16 if len(ids) and ids.max() < np.iinfo(np.int16).max else np.int64
    return np.argsort(ids.astype(kind), kind="stable")


class Layout(NamedTuple):
    """One order's rounds.  Groups are (round, layer) and calls (round, slot), numbered in round
    order; every entry belongs to one of each.  ``everyone`` marks the calls over the whole
    batch; ``builds`` counts the calls over part of the batch (each builds its own metadata)."""

    round_of: np.ndarray
    group_of: np.ndarray
    group_round: np.ndarray
    group_layer: np.ndarray
    call_of: np.ndarray
    call_round: np.ndarray
    call_slot: np.ndarray
    call_order: np.ndarray
    """(n,) entries in call order (programs ascending within a call)."""
    call_size: np.ndarray
    everyone: np.ndarray
    builds: int

    def cost(self, costs: Costs) -> float:
        return (
            len(self.group_round) * costs.layer_run
            + len(self.call_round) * costs.call
            + self.builds * costs.build
        )


def layout(
    programs: Programs, round_key: np.ndarray, costs: Costs, bound: float = np.inf
) -> Layout | None:
    """The order whose rounds are ``round_key`` ranked; None if its layer runs and calls alone
    cost more than ``bound`` (then its request sets are not worth counting)."""
    round_of, _ = dense_rank(round_key)
    width = programs.num_slots
    group_of, groups = dense_rank(round_of * width + programs.layer)
    call_of, calls = dense_rank(round_of * width + programs.slot)
    if len(groups) * costs.layer_run + len(calls) * costs.call > bound:
        return None
    call_size = np.bincount(call_of, minlength=len(calls))
    everyone = call_size == len(programs.distinct)
    call_order = grouped(call_of)
    return Layout(
        round_of,
        group_of,
        groups // width,
        groups % width,
        call_of,
        calls // width,
        calls % width,
        call_order,
        call_size,
        everyone,
        int(len(everyone) - everyone.sum()),
    )


_SET_HASH = np.random.default_rng(0).integers(1, 2**63, 1 << 12, dtype=np.uint64)


def request_sets(members: np.ndarray, sizes: np.ndarray, partial: np.ndarray) -> np.ndarray:
    """For calls given as ``members`` (their programs, call after call, ``sizes`` each): the
    first call among ``partial`` with the same members (itself elsewhere).

    Sets are told apart by a sum of random 64-bit words per member, then checked member by
    member, so two calls share their index slices only if their sets are equal.
    """
    global _SET_HASH
    if len(_SET_HASH) <= members.max():
        _SET_HASH = np.random.default_rng(0).integers(
            1, 2**63, 2 * int(members.max()) + 2, dtype=np.uint64
        )
    same_set = np.arange(len(sizes))
    candidates = np.flatnonzero(partial)
    if not len(candidates):
        return same_set
    starts = np.cumsum(sizes) - sizes
    digest = np.add.reduceat(_SET_HASH[members], starts) ^ sizes.astype(np.uint64)
    _, first, inverse = np.unique(digest[candidates], return_index=True, return_inverse=True)
    same_set[candidates] = candidates[first][inverse.reshape(-1)]
    copies = candidates[same_set[candidates] != candidates]
    if len(copies):
        kept = same_set[copies]
        counts = sizes[copies]
        if not np.array_equal(counts, sizes[kept]):
            return exact_request_sets(members, sizes, partial)
        ends = np.cumsum(counts)
        within = np.arange(ends[-1]) - np.repeat(ends - counts, counts)
        mine = members[np.repeat(starts[copies], counts) + within]
        if not np.array_equal(mine, members[np.repeat(starts[kept], counts) + within]):
            return exact_request_sets(members, sizes, partial)
    return same_set


def exact_request_sets(members: np.ndarray, sizes: np.ndarray, partial: np.ndarray) -> np.ndarray:
    """:func:`request_sets` without the digest (after two different sets met in one)."""
    starts = np.cumsum(sizes) - sizes
    same_set = np.arange(len(sizes))
    first: dict[bytes, int] = {}
    for call in np.flatnonzero(partial).tolist():
        key = members[starts[call] : starts[call] + sizes[call]].tobytes()
        same_set[call] = first.setdefault(key, call)
    return same_set


def prefix_sources(
    programs: Sequence[Program], histories: Sequence[Hashable | None]
) -> dict[int, list[int]]:
    """For each row that shares its history with another row: per step, the row that computes
    that step for it (itself, or the lowest row with the same history and program prefix)."""
    cohorts: dict[Hashable, list[int]] = defaultdict(list)
    for row, history in enumerate(histories):
        if history is not None:
            cohorts[history].append(row)
    sources: dict[int, list[int]] = {}
    for rows in cohorts.values():
        if len(rows) < 2:
            continue
        prefixes: dict[tuple[int, int], tuple[int, int]] = {}  # (parent, layer) -> (id, row)
        for row in rows:
            prefix, row_sources = -1, []
            for layer in programs[row]:
                prefix, source = prefixes.setdefault((prefix, layer), (len(prefixes), row))
                row_sources.append(source)
            sources[row] = row_sources
    return {row: s for row, s in sources.items() if any(source != row for source in s)}


def build_plan(
    programs: Sequence[Program],
    query_start_loc: np.ndarray,
    device: torch.device,
    num_layers: int,
    num_slots: int,
    histories: Sequence[Hashable | None] | None = None,
    costs: Costs = DEFAULT_COSTS,
) -> Plan:
    """Plan for a batch whose row i runs ``programs[i]`` on tokens ``qsl[i]:qsl[i+1]``.

    ``query_start_loc`` is the (R+1,) int array of token offsets of the R rows; the engine has
    ``num_slots`` KV slots for a model of ``num_layers`` layers.  Rows with equal, non-None
    ``histories[i]`` hold the same tokens at the same positions after the same token history,
    so they share the steps of their common program prefix.
    """
    table = tabulate(programs, num_layers, num_slots)
    sources = prefix_sources(programs, histories) if histories is not None else {}
    if len(table.distinct) == 1 and not sources:
        return uniform_plan(table.distinct[0], table.slot.tolist())
    chosen = layout(table, by_layer_rounds(table), costs)
    by_step = layout(table, by_step_rounds(table), costs, chosen.cost(costs))
    if by_step is not None and by_step.cost(costs) <= chosen.cost(costs):
        chosen = by_step
    return materialize(table, chosen, np.asarray(query_start_loc, np.int64), device, sources)


class Expansion(NamedTuple):
    """Entries expanded to batch rows (every row of the entry's program) and tokens (every
    token of each row), entry after entry."""

    rows: np.ndarray
    tokens: np.ndarray
    row_start: np.ndarray
    """(entries + 1,) where each entry's rows begin in ``rows``."""
    token_start: np.ndarray
    """(rows + 1,) where each row's tokens begin in ``tokens``."""


def expand(table: Programs, entries: np.ndarray, query_start_loc: np.ndarray) -> Expansion:
    members = table.program[entries]
    num_programs, num_rows = len(table.distinct), len(table.of_row)
    if num_programs == num_rows:  # every request its own program
        row_of = np.empty(num_rows, np.int64)
        row_of[table.of_row] = np.arange(num_rows)
        rows, row_start = row_of[members], np.arange(len(members) + 1)
    else:
        row_order = grouped(table.of_row)
        rows_per_program = np.bincount(table.of_row, minlength=num_programs)
        first_row = np.cumsum(rows_per_program) - rows_per_program
        counts = rows_per_program[members]
        ends = np.cumsum(counts)
        rows = row_order[
            np.arange(ends[-1]) + np.repeat(first_row[members] - ends + counts, counts)
        ]
        row_start = np.concatenate([[0], ends])
    if query_start_loc[-1] == num_rows:  # one token per row: decode
        return Expansion(rows, query_start_loc[rows], row_start, np.arange(len(rows) + 1))
    sizes = np.diff(query_start_loc)[rows]
    ends = np.cumsum(sizes)
    tokens = np.arange(ends[-1]) + np.repeat(query_start_loc[rows] - ends + sizes, sizes)
    return Expansion(rows, tokens, row_start, np.concatenate([[0], ends]))


def joined(first: Expansion, second: Expansion) -> Expansion:
    return Expansion(
        np.concatenate([first.rows, second.rows]),
        np.concatenate([first.tokens, second.tokens]),
        np.concatenate([first.row_start[:-1], second.row_start + len(first.rows)]),
        np.concatenate([first.token_start[:-1], second.token_start + len(first.tokens)]),
    )


def materialize(
    table: Programs,
    order: Layout,
    query_start_loc: np.ndarray,
    device: torch.device,
    sources: dict[int, list[int]],
) -> Plan:
    """The plan of one order, its index arrays built at once.

    The entries of every round that is not over the whole batch are expanded once, sorted by
    group and, within a group, by call: each group is then a span of them, and so is each call
    in a round of one group (or whose members happen to line up); the other calls' entries are
    expanded again, after them.  A call over part of the batch that has the request set of an
    earlier call takes its slices (its index arrays are stored once).
    """
    num_rounds = int(order.group_round[-1]) + 1
    uniform = (np.bincount(order.group_round, minlength=num_rounds) == 1) & (
        np.bincount(order.call_round, minlength=num_rounds) == 1
    )
    whole = np.zeros(num_rounds, bool)
    whole[order.call_round[order.everyone]] = True
    uniform &= whole
    copied = group_copies(table, order, sources) if sources else {}
    uniform[order.group_round[list(copied)]] = False
    num_groups, num_calls = len(order.group_round), len(order.call_round)

    by_group = order.call_order[grouped(order.group_of[order.call_order])]
    entries = by_group[~uniform[order.round_of[by_group]]]
    position = np.full(len(order.round_of), -1)
    position[entries] = np.arange(len(entries))
    group_end = np.cumsum(np.bincount(order.group_of[entries], minlength=num_groups))
    group_span = np.stack(
        [group_end - np.bincount(order.group_of[entries], minlength=num_groups), group_end], 1
    )

    same_set = request_sets(table.program[order.call_order], order.call_size, ~order.everyone)
    own = ~order.everyone & (same_set == np.arange(num_calls))
    call_entries = order.call_order
    call_start = np.cumsum(order.call_size) - order.call_size
    at = position[call_entries]
    low = np.minimum.reduceat(at, call_start)
    high = np.maximum.reduceat(at, call_start)
    lined_up = (low >= 0) & (high - low + 1 == order.call_size)
    apart = np.flatnonzero(own & ~lined_up)
    spread = expand(table, entries, query_start_loc)
    call_span = np.stack([low, high + 1], 1)
    if len(apart):
        sizes = order.call_size[apart]
        ends = np.cumsum(sizes)
        extra = call_entries[
            np.arange(ends[-1]) + np.repeat(call_start[apart] - ends + sizes, sizes)
        ]
        call_span[apart] = len(entries) + np.stack([ends - sizes, ends], 1)
        spread = joined(spread, expand(table, extra, query_start_loc))

    # Host index: tokens, rows, call-local token offsets of the calls' sets, copies.
    num_tokens, num_rows = len(spread.tokens), len(spread.rows)
    calls = np.flatnonzero(own)
    first_row = spread.row_start[call_span[calls, 0]]
    last_row = spread.row_start[call_span[calls, 1]]
    counts = last_row - first_row + 1
    ends = np.cumsum(counts)
    within = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts)
    starts = spread.token_start[np.repeat(first_row, counts) + within] - np.repeat(
        spread.token_start[first_row], counts
    )
    chunks = [spread.tokens, spread.rows, starts]
    size = num_tokens + num_rows + len(starts)

    def append(chunk: np.ndarray) -> int:
        nonlocal size
        chunks.append(chunk)
        size += len(chunk)
        return size - len(chunk)

    token_at = spread.token_start[spread.row_start]  # where each expanded entry's tokens begin
    layers = order.group_layer.tolist()
    sliced = np.flatnonzero(~uniform[order.group_round])
    bounds = token_at[group_span[sliced]].T
    group_list = list(map(Group, layers, slices(num_groups, sliced, *bounds)))
    for g in copied:
        a, b = group_span[g].tolist()
        rows = spread.rows[spread.row_start[a] : spread.row_start[b]]
        group_list[g] = copy_group(layers[g], rows, copied[g], query_start_loc, append)

    offset = num_tokens + num_rows
    edges = np.zeros((num_calls, 6), np.int64)  # per call with its own set: its slice bounds
    edges[calls, 0:2] = token_at[call_span[calls]]
    edges[calls, 2], edges[calls, 3] = num_tokens + first_row, num_tokens + last_row
    edges[calls, 4], edges[calls, 5] = offset + ends - counts, offset + ends
    partial = np.flatnonzero(~order.everyone)
    bounds = edges[same_set[partial]].T
    call_list = list(
        map(
            Call,
            order.call_slot.tolist(),
            *(slices(num_calls, partial, bounds[i], bounds[i + 1]) for i in (0, 2, 4)),
        )
    )
    region = (slice(0, num_tokens), slice(num_tokens, offset), slice(offset, offset + len(starts)))

    group_bounds = np.searchsorted(order.group_round, np.arange(num_rounds + 1)).tolist()
    call_bounds = np.searchsorted(order.call_round, np.arange(num_rounds + 1)).tolist()
    rounds = [
        Round(tuple(group_list[g0:g1]), tuple(call_list[c0:c1]))
        for g0, g1, c0, c1 in zip(
            group_bounds[:-1], group_bounds[1:], call_bounds[:-1], call_bounds[1:], strict=True
        )
    ]
    host_index = np.concatenate(chunks)
    token_index = torch.from_numpy(host_index).to(device, non_blocking=True)
    return Plan(
        rounds,
        token_index,
        host_index,
        call_region=region if len(calls) else None,
        expanded_tokens=num_tokens,
    )


def slices(size: int, where: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> list:
    """A list of ``size``: ``slice(starts[i], stops[i])`` at ``where[i]``, None elsewhere."""
    out = np.full(size, None, object)
    out[where] = list(map(slice, starts.tolist(), stops.tolist()))
    return out.tolist()


def group_copies(
    table: Programs, order: Layout, sources: dict[int, list[int]]
) -> dict[int, dict[int, int]]:
    """Per group, its rows that copy the step from another row: {target row: source row}."""
    lengths = table.valid.sum(axis=1)
    first_entry = np.cumsum(lengths) - lengths
    copied: dict[int, dict[int, int]] = defaultdict(dict)
    for row, row_sources in sources.items():
        entry = int(first_entry[table.of_row[row]])
        for step, source in enumerate(row_sources):
            if source != row:
                copied[int(order.group_of[entry + step])][row] = source
    return copied


def copy_group(layer: int, rows: np.ndarray, copied: dict[int, int], qsl: np.ndarray, append):
    """The group of ``rows`` running ``layer`` where the ``copied`` rows take their source's
    results: its computed tokens, and the (targets, sources) token pairs."""

    def token_range(part: list[int]) -> np.ndarray:
        return np.concatenate([np.arange(qsl[r], qsl[r + 1]) for r in part])

    targets = sorted(copied)
    parts = [
        token_range([r for r in rows.tolist() if r not in copied]),
        token_range(targets),
        token_range([copied[t] for t in targets]),
    ]
    spans = [slice(start, start + len(p)) for p in parts for start in [append(p)]]
    return Group(layer, spans[0], (spans[1], spans[2]))

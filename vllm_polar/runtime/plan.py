"""Per-forward routing plan: which tokens run which layer, in which order, on which KV slot.

Built on the host from the persistent batch (request order = token order) by array operations
over the batch's programs × steps, and shipped to the device in one transfer.  All tokens of a
request share its program, so every token set below is a union of whole requests' token
ranges.  While the batch keeps its requests and token counts (steady decode) the runner reuses
the plan (:mod:`vllm_polar.runtime.runner`).

A forward is a sequence of *rounds*.  A round runs the QKV of some layers for some tokens
(``groups``), then one attention call, then the layers' output projection and MLP.  Step k of a
program keeps its K/V in the slot :func:`vllm_polar.program.step_slots` gives it (the first run
of layer l in slot l).  A round's call covers exactly the requests that run a step in the round,
each on its own step's slot: all slots' caches share one page layout, so one attention call
reads and writes every request's pages through that request's rows of its own slot's block
table, which the call's metadata (built by the runner) holds.  It reads and writes nothing of
the other requests and costs what its tokens cost.  Three orders of rounds, each a round
number per (program, step):

- *by step*: round k runs step k of every program, one group per distinct layer at step k.
  A layer run at different steps by different programs has its weights read once per step;
  the rounds, and so the calls, are at most the longest program's steps (at most S).
- *by layer*: a step's round is keyed by (the highest layer its program has reached, the loops
  back since then, its layer), in ascending order.  Every program runs the first time it
  reaches layer l in the round of layer l, in slot l, whatever it skipped before: one layer
  run and one call.  A program that looped back catches up (with the programs that make the
  same loop) before the others go on.  Eight programs of mean length 24 over 24 layers: 34
  layer runs instead of 87.
- *merged*: a greedy common supersequence of the programs' layer sequences.  Each round runs
  the one layer that the programs' next steps wait on most (weighted by the steps each has
  left), and every program whose next step runs it takes that step.  Where many programs loop
  in different places this needs fewer rounds than by layer (a fifth to a quarter fewer for
  256-1,024 searched programs), but it costs a numpy pass per round to plan (~1 ms for 64-256
  programs), so it is tried only where a layer run costs more than that (CPUs).

A batch of one program runs by step over the whole batch.  For mixed batches the plan takes
the order of lower cost: layer runs (a read of a layer's weights), attention calls (launches)
and metadata builds (one per call that is not over the whole batch on one slot), weighed by
:class:`Costs`, which the runner measures on the device at the engine's first step.

*Shared prefixes.*  Rows with the same token history (the runner says which: e.g. one prompt
prefilled under several programs) compute the same thing at step k as long as their programs
agree on steps 0..k.  There the lowest such row computes the step's QKV, output projection and
MLP, and the others copy its results; every row still takes part in the attention call, which
writes its own KV pages (read later, once the rows' tokens or programs part).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from vllm_polar.program import Program, ProgramError, step_slots


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

MERGE_MIN_LAYER_RUN = 1e-3
"""Seconds a layer run must cost for the planner to try the merged order, whose planning
takes about that long for a batch of 64-256 programs: one layer run saved then pays for it."""


class Group(NamedTuple):
    """Tokens that run ``layer`` in a round.  ``tokens`` slices :attr:`Plan.token_index`: the
    tokens the group computes; None means every token of the batch, in a round of this one group
    and one call.  ``copies`` (targets, sources), two slices of the same length: tokens of rows
    that share a program prefix take the results of these computed tokens instead."""

    layer: int
    tokens: slice | None
    copies: tuple[slice, slice] | None = None


class Call(NamedTuple):
    """The attention call of a round: every request that runs a step in the round, each on the
    slot where its step keeps its K/V.

    All slot attentions' caches are views of one pool with one page layout (vLLM lays every
    KV-cache group out from byte 0 of the same tensors; checked at start-up), so the slot
    attention ``slot`` reads and writes any request's pages, given that request's rows of its
    own slot's block table and slot mapping: the call's metadata holds those.

    None for the slices: every request of the batch, all on ``slot``, under the step's
    whole-batch metadata of that slot.  Otherwise they slice :attr:`Plan.token_index`:
    ``tokens`` the requests' tokens, ``rows`` their batch rows, ``starts`` the offsets of their
    tokens within the call (one more than rows), all inside :attr:`Plan.call_region`.
    """

    slot: int
    tokens: slice | None
    rows: slice | None
    starts: slice | None


class Round(NamedTuple):
    groups: tuple[Group, ...]
    call: Call


class CallRegion(NamedTuple):
    """Where the calls over part of the batch lie in :attr:`Plan.token_index`, and how the
    runner takes every row's block table and every token's slot mapping from its own slot.

    ``tokens``, ``rows``, ``starts``: every such call's slices lie in these.  ``row_slots``
    and ``token_slots``: the slot of each row of ``rows`` and each token of ``tokens``.
    ``row_order`` (positions in ``rows``) and ``rows_by_slot`` (those rows) list the rows
    slot after slot, ``token_order`` and ``tokens_by_slot`` the tokens; ``slot_runs`` is a
    (k, 5) host array of (slot, first and last + 1 position in the row order, the same in the
    token order) for the k slots present.
    """

    tokens: slice
    rows: slice
    starts: slice
    row_slots: slice
    token_slots: slice
    row_order: slice
    rows_by_slot: slice
    token_order: slice
    tokens_by_slot: slice
    slot_runs: np.ndarray


@dataclass(frozen=True)
class Plan:
    """Routing for one forward: its rounds in order.

    ``token_index`` is a (T,) int64 device tensor holding the index arrays of every group, copy
    and call that does not cover the whole batch, concatenated; ``host_index`` is its host copy.
    ``call_attention`` maps a call's ``tokens.start`` to the attention metadata of its requests
    (filled in by the runner).  In a round without copies whose call is over part of the batch,
    the round's groups compute the call's tokens, group after group, so the call takes the
    groups' q/k/v joined.
    """

    rounds: list[Round]
    token_index: torch.Tensor | None
    host_index: np.ndarray | None = None
    call_attention: dict[int, object] = field(default_factory=dict)
    call_region: CallRegion | None = None
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
        """The calls over part of the batch (or over several slots): each needs attention
        metadata of its own."""
        return [r.call for r in self.rounds if r.call.tokens is not None]

    def call_metadata(self, call: Call) -> object:
        return self.call_attention[call.tokens.start]

    def token_slots(self, call: Call) -> np.ndarray:
        """(n,) host slot of each token of a call over part of the batch."""
        region = self.call_region
        offset = region.token_slots.start - region.tokens.start
        return self.host_index[call.tokens.start + offset : call.tokens.stop + offset]


def uniform_plan(program: Program, slots: Sequence[int]) -> Plan:
    """Every token runs the same program: round k is step k over the whole batch."""
    return Plan(
        rounds=[
            Round((Group(layer, None),), Call(slot, None, None, None))
            for layer, slot in zip(program, slots, strict=True)
        ],
        token_index=None,
    )


class Programs(NamedTuple):
    """A batch's distinct programs as arrays: which steps each has, as a (P, W) table (W the
    longest program's steps), and the steps as flat *entries* (program-major, steps in order)."""

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
    layer_key: np.ndarray
    """(n,) round key of each entry in the by-layer order (:func:`by_layer_keys`)."""
    num_slots: int


FEW_PROGRAMS = 8
"""Up to this many new programs the table takes their slots program by program from
:func:`step_slots` (a few microseconds each); more, from :func:`entry_slots` at once."""


class ProgramTable:
    """The programs an engine has seen, each tabulated once: its steps' layers, slots and
    by-layer round keys, laid end to end in flat arrays.  Tabulating a batch is then a
    dictionary lookup per row and array gathers; a new program costs its own steps once.
    Holds at most ``capacity`` programs, then starts over."""

    def __init__(self, num_layers: int, num_slots: int, capacity: int = 1 << 16) -> None:
        self.num_layers, self.num_slots, self.capacity = num_layers, num_slots, capacity
        self.clear()

    def clear(self) -> None:
        self.ids: dict[Program, int] = {}
        self.programs: list[Program] = []
        self.offsets = np.zeros(64, np.int64)
        self.lengths = np.zeros(64, np.int64)
        self.steps = np.zeros((3, 1024), np.int64)
        """(3, capacity): layer, slot and by-layer round key of every step of every program,
        program after program; ``size`` of them in use."""
        self.size = 0

    def lookup(self, programs: Sequence[Program]) -> np.ndarray:
        """(R,) int64 id of each program, registering the ones not seen yet."""
        if len(self.ids) + len(programs) > self.capacity:
            self.clear()
        ids = np.fromiter(
            map(self.ids.get, programs, itertools.repeat(-1)), np.int64, len(programs)
        )
        missing = np.flatnonzero(ids < 0).tolist()
        if missing:
            self.register(list(dict.fromkeys(programs[i] for i in missing)))
            ids[missing] = [self.ids[programs[i]] for i in missing]
        return ids

    def register(self, new: list[Program]) -> None:
        lengths = np.fromiter(map(len, new), np.int64, len(new))
        if lengths.max() > self.num_slots:
            raise ProgramError(
                f"a program of {lengths.max()} steps does not fit {self.num_slots} slots"
            )
        valid = np.arange(lengths.max()) < lengths[:, None]
        layers = np.full(valid.shape, -1, np.int64)
        layer = np.fromiter(itertools.chain.from_iterable(new), np.int64)
        layers[valid] = layer
        if len(new) > FEW_PROGRAMS:
            program, step = np.nonzero(valid)
            slot = entry_slots(new, program, step, layer, self.num_layers, self.num_slots)
        else:
            slot = np.fromiter(
                itertools.chain.from_iterable(
                    step_slots(p, self.num_layers, self.num_slots) for p in new
                ),
                np.int64,
            )
        keys = by_layer_keys(layers, valid, self.num_layers, self.num_slots)
        steps = np.stack([layer, slot, keys])
        first, end = len(self.programs), len(self.programs) + len(new)
        self.offsets, self.lengths = (grown(a, end) for a in (self.offsets, self.lengths))
        self.steps = grown(self.steps, self.size + steps.shape[1])
        self.offsets[first:end] = self.size + np.cumsum(lengths) - lengths
        self.lengths[first:end] = lengths
        self.steps[..., self.size : self.size + steps.shape[1]] = steps
        self.size += steps.shape[1]
        self.ids.update(zip(new, range(first, first + len(new)), strict=True))
        self.programs.extend(new)

    def tabulate(self, programs: Sequence[Program]) -> Programs:
        """The batch whose row i runs ``programs[i]``, as arrays; its distinct programs in
        order of first appearance, whatever the table saw before."""
        ids, first, of_row = np.unique(
            self.lookup(programs), return_index=True, return_inverse=True
        )
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        ids, of_row = ids[order], rank[of_row.reshape(-1)]
        lengths = self.lengths[ids]
        ends = np.cumsum(lengths)
        program = np.repeat(np.arange(len(ids)), lengths)
        step = np.arange(ends[-1]) - np.repeat(ends - lengths, lengths)
        layer, slot, key = np.take(self.steps, self.offsets[ids][program] + step, axis=1)
        valid = np.arange(lengths.max()) < lengths[:, None]
        distinct = [self.programs[i] for i in ids.tolist()]
        return Programs(valid, of_row, distinct, program, step, layer, slot, key, self.num_slots)


def tabulate(programs: Sequence[Program], num_layers: int, num_slots: int) -> Programs:
    """The batch whose row i runs ``programs[i]``, as arrays, from programs not seen before."""
    return ProgramTable(num_layers, num_slots).tabulate(programs)


def entry_slots(
    programs: Sequence[Program],
    program: np.ndarray,
    step: np.ndarray,
    layer: np.ndarray,
    num_layers: int,
    num_slots: int,
) -> np.ndarray:
    """(n,) slots of all entries of ``programs`` at once (``program``, ``step``, ``layer``:
    each entry's, program-major), equal to :func:`step_slots` program by program: a first run
    keeps its layer's slot, the r-th re-run takes D + r; a program whose re-runs overflow S
    takes the step-by-step rule."""
    key = program * num_layers + layer
    by_key = grouped(key)  # stable: a (program, layer)'s steps in order, its first run first
    rerun = np.zeros(len(key), bool)
    rerun[by_key[1:]] = key[by_key[1:]] == key[by_key[:-1]]
    before = np.cumsum(rerun) - rerun
    first = np.arange(len(key)) - step  # each entry's program's first entry
    slot = np.where(rerun, num_layers + before - before[first], layer)
    beyond = slot >= num_slots
    if beyond.any():
        overflows = np.zeros(len(programs), bool)
        overflows[program[beyond]] = True
        overflow = np.flatnonzero(overflows).tolist()
        slot[overflows[program]] = np.fromiter(
            itertools.chain.from_iterable(
                step_slots(programs[p], num_layers, num_slots) for p in overflow
            ),
            np.int64,
        )
    return slot


def by_layer_keys(
    layers: np.ndarray, valid: np.ndarray, num_layers: int, num_slots: int
) -> np.ndarray:
    """(n,) by-layer round key of every step of the (P, W) ``layers`` (module docstring):
    (the highest layer reached, the loops back since, the layer), as one integer."""
    high = np.maximum.accumulate(layers, axis=1)
    reached = np.ones_like(valid)
    reached[:, 1:] = layers[:, 1:] > high[:, :-1]
    back = np.zeros_like(valid)
    back[:, 1:] = layers[:, 1:] <= layers[:, :-1]
    loops = np.cumsum(back, axis=1)
    since = loops - np.maximum.accumulate(np.where(reached, loops, 0), axis=1)
    return ((high * (num_slots + 1) + since) * num_layers + layers)[valid]


def by_step_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the by-step order: its step."""
    return programs.step


def by_step_floor(programs: Programs, costs: Costs) -> float:
    """The by-step order's cost without its metadata builds, from one count: its layer runs
    are the distinct (step, layer) pairs, its calls the longest program's steps."""
    pairs = np.bincount(programs.step * programs.num_slots + programs.layer)
    return np.count_nonzero(pairs) * costs.layer_run + programs.valid.shape[1] * costs.call


def by_layer_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the by-layer order (module docstring)."""
    return programs.layer_key


def merged_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the merged order (module docstring): one pass over
    the programs still running per round."""
    lengths = programs.valid.sum(axis=1)
    upcoming = np.cumsum(lengths) - lengths  # each program's next entry
    left = lengths.copy()
    rounds = np.empty(len(programs.layer), np.int64)
    running = np.arange(len(lengths))
    for number in itertools.count():
        if not len(running):
            return rounds
        entries = upcoming[running]
        layers = programs.layer[entries]
        takes = layers == np.bincount(layers, weights=left[running]).argmax()
        rounds[entries[takes]] = number
        upcoming[running[takes]] += 1
        left[running[takes]] -= 1
        running = running[left[running] > 0]


def dense_rank(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each key among the distinct keys, the distinct keys ascending)."""
    size = int(keys.max()) + 1
    if size > 32 * len(keys) + (1 << 16):  # a sort costs less than a table of every key
        distinct, rank = np.unique(keys, return_inverse=True)
        return rank.reshape(-1), distinct
    present = np.zeros(size, bool)
    present[keys] = True
    distinct = np.flatnonzero(present)
    rank = np.empty(size, np.int64)
    rank[distinct] = np.arange(len(distinct))
    return rank[keys], distinct


def grouped(ids: np.ndarray) -> np.ndarray:
    """Stable order of ``ids`` (non-negative ints): a counting sort where they fit 16 bits."""
    kind = np.uint16 if len(ids) and ids.max() <= np.iinfo(np.uint16).max else np.int64
    return np.argsort(ids.astype(kind), kind="stable")


def grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array``, or a copy with its last axis at least doubled to hold ``size`` (zeros past
    the old end), so that appending stays linear overall."""
    if size <= array.shape[-1]:
        return array
    bigger = np.zeros((*array.shape[:-1], max(size, 2 * array.shape[-1])), array.dtype)
    bigger[..., : array.shape[-1]] = array
    return bigger


class Layout(NamedTuple):
    """One order's rounds.  Groups are (round, layer), numbered in round order; every entry
    belongs to one, and every round makes one attention call.  ``everyone`` marks the rounds
    whose call is over the whole batch on one slot; ``builds`` counts the others (each builds
    its own metadata)."""

    round_of: np.ndarray
    group_of: np.ndarray
    group_round: np.ndarray
    group_layer: np.ndarray
    by_group: np.ndarray
    """(n,) entries in group order (so in round order; programs ascending within a group)."""
    call_slot: np.ndarray
    """(rounds,) the slot attention that runs each round's call: its first entry's slot."""
    everyone: np.ndarray
    builds: int

    def cost(self, costs: Costs) -> float:
        return (
            len(self.group_round) * costs.layer_run
            + len(self.everyone) * costs.call  # one call per round
            + self.builds * costs.build
        )


def layout(
    programs: Programs,
    round_key: np.ndarray,
    costs: Costs,
    bound: float = np.inf,
    layer_per_round: bool = False,
) -> Layout | None:
    """The order whose rounds are ``round_key`` ranked; None if its layer runs and calls alone
    cost more than ``bound``.  ``layer_per_round``: the key gives each round one layer (the
    by-layer and merged orders), so its groups are its rounds and need no ranking of their own."""
    round_of, rounds = dense_rank(round_key)
    if layer_per_round:
        group_of, group_round = round_of, np.arange(len(rounds))
        group_layer = np.empty(len(rounds), np.int64)
        group_layer[round_of] = programs.layer
    else:
        group_of, groups = dense_rank(round_of * programs.num_slots + programs.layer)
        group_round, group_layer = np.divmod(groups, programs.num_slots)
    if len(group_round) * costs.layer_run + len(rounds) * costs.call > bound:
        return None
    by_group = grouped(group_of)
    size = np.bincount(round_of, minlength=len(rounds))
    first = np.cumsum(size) - size
    slots = programs.slot[by_group]
    one_slot = np.minimum.reduceat(slots, first) == np.maximum.reduceat(slots, first)
    everyone = one_slot & (size == len(programs.distinct))
    return Layout(
        round_of,
        group_of,
        group_round,
        group_layer,
        by_group,
        slots[first],
        everyone,
        int(len(everyone) - everyone.sum()),
    )


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
    table: ProgramTable | None = None,
) -> Plan:
    """Plan for a batch whose row i runs ``programs[i]`` on tokens ``qsl[i]:qsl[i+1]``.

    ``query_start_loc`` is the (R+1,) int array of token offsets of the R rows; the engine has
    ``num_slots`` KV slots for a model of ``num_layers`` layers.  Rows with equal, non-None
    ``histories[i]`` hold the same tokens at the same positions after the same token history,
    so they share the steps of their common program prefix.  ``table``: the engine's programs
    seen so far (a fresh one if None).
    """
    if table is None:
        table = ProgramTable(num_layers, num_slots)
    batch = table.tabulate(programs)
    sources = prefix_sources(programs, histories) if histories is not None else {}
    if len(batch.distinct) == 1 and not sources:
        return uniform_plan(batch.distinct[0], batch.slot.tolist())
    chosen = layout(batch, by_layer_rounds(batch), costs, layer_per_round=True)
    if by_step_floor(batch, costs) <= chosen.cost(costs):
        by_step = layout(batch, by_step_rounds(batch), costs, chosen.cost(costs))
        if by_step is not None and by_step.cost(costs) <= chosen.cost(costs):
            chosen = by_step
    if costs.layer_run >= MERGE_MIN_LAYER_RUN:
        merged = layout(
            batch, merged_rounds(batch), costs, chosen.cost(costs), layer_per_round=True
        )
        if merged is not None and merged.cost(costs) < chosen.cost(costs):
            chosen = merged
    return materialize(batch, chosen, np.asarray(query_start_loc, np.int64), device, sources)


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


class Chunks:
    """Host index arrays laid end to end: the plan's ``host_index``."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, part: np.ndarray) -> slice:
        """Append ``part``; returns where it lies."""
        self.parts.append(part)
        self.size += len(part)
        return slice(self.size - len(part), self.size)


def materialize(
    table: Programs,
    order: Layout,
    query_start_loc: np.ndarray,
    device: torch.device,
    sources: dict[int, list[int]],
) -> Plan:
    """The plan of one order, its index arrays built at once.

    The entries of every round that is not one layer over the whole batch on one slot are
    expanded to rows and tokens once, in group order: each group is then a span of them, and
    so is each round, whose call takes that span.
    """
    num_rounds, num_groups = len(order.everyone), len(order.group_round)
    uniform = order.everyone & (np.bincount(order.group_round, minlength=num_rounds) == 1)
    copied = group_copies(table, order, sources) if sources else {}
    uniform[order.group_round[list(copied)]] = False
    entries = order.by_group[~uniform[order.round_of[order.by_group]]]
    spread = expand(table, entries, query_start_loc)
    chunks = Chunks()
    tokens, rows = chunks.add(spread.tokens), chunks.add(spread.rows)
    token_at = spread.token_start[spread.row_start]  # where each expanded entry's tokens begin

    layers = order.group_layer.tolist()
    group_size = np.bincount(order.group_of[entries], minlength=num_groups)
    group_end = np.cumsum(group_size)
    sliced = ~uniform[order.group_round]
    bounds = token_at[np.stack([group_end - group_size, group_end])[:, sliced]]
    group_list = records(Group, layers, slices(sliced, *bounds), [None] * num_groups)
    for g in copied:
        a, b = (group_end[g] - group_size[g], group_end[g])
        group_rows = spread.rows[spread.row_start[a] : spread.row_start[b]]
        group_list[g] = copy_group(layers[g], group_rows, copied[g], query_start_loc, chunks.add)

    partial = np.flatnonzero(~order.everyone)
    region = None
    bounds = [np.zeros(0, np.int64)] * 6
    if len(partial):
        round_size = np.bincount(order.round_of[entries], minlength=num_rounds)
        round_end = np.cumsum(round_size)
        call_rows = spread.row_start[np.stack([round_end - round_size, round_end])[:, partial]]
        call_tokens = spread.token_start[call_rows]
        counts = call_rows[1] - call_rows[0] + 1
        ends = np.cumsum(counts)
        within = np.arange(ends[-1]) - np.repeat(ends - counts, counts)
        starts = chunks.add(
            spread.token_start[np.repeat(call_rows[0], counts) + within]
            - np.repeat(call_tokens[0], counts)
        )
        region = call_region(table, spread, entries, tokens, rows, starts, chunks)
        bounds = [
            *(call_tokens + tokens.start),
            *(call_rows + rows.start),
            ends - counts + starts.start,
            ends + starts.start,
        ]
    call_list = records(
        Call,
        order.call_slot.tolist(),
        *(slices(~order.everyone, bounds[i], bounds[i + 1]) for i in (0, 2, 4)),
    )

    if num_groups == num_rounds:  # a group per round (the by-layer order)
        round_groups = zip(group_list)
    else:
        bounds = np.searchsorted(order.group_round, np.arange(num_rounds + 1)).tolist()
        round_groups = (tuple(group_list[g0:g1]) for g0, g1 in itertools.pairwise(bounds))
    rounds = records(Round, round_groups, call_list)
    host_index = np.concatenate(chunks.parts)
    token_index = torch.from_numpy(host_index).to(device, non_blocking=True)
    return Plan(
        rounds, token_index, host_index, call_region=region, expanded_tokens=len(spread.tokens)
    )


def call_region(
    table: Programs,
    spread: Expansion,
    entries: np.ndarray,
    tokens: slice,
    rows: slice,
    starts: slice,
    chunks: Chunks,
) -> CallRegion:
    """The calls' region over the expanded ``entries``: the slot of every row and token, and
    the rows and tokens slot after slot (:class:`CallRegion`)."""
    row_slots = table.slot[entries]
    if len(spread.rows) != len(entries):  # some programs run on several rows
        row_slots = np.repeat(row_slots, np.diff(spread.row_start))
    row_order = grouped(row_slots)
    row_count = np.bincount(row_slots, minlength=table.num_slots)
    row_place = (chunks.add(row_slots), chunks.add(row_order), chunks.add(spread.rows[row_order]))
    if len(spread.tokens) == len(spread.rows):  # one token per row: tokens follow the rows
        token_slots, token_order, token_count = row_slots, row_order, row_count
        token_place = (row_place[0], row_place[1], chunks.add(spread.tokens[row_order]))
    else:
        token_slots = np.repeat(row_slots, np.diff(spread.token_start))
        token_order = grouped(token_slots)
        token_count = np.bincount(token_slots, minlength=table.num_slots)
        token_place = tuple(map(chunks.add, (token_slots, token_order, spread.tokens[token_order])))
    present = np.flatnonzero(row_count)
    row_end, token_end = np.cumsum(row_count)[present], np.cumsum(token_count)[present]
    runs = np.stack(
        [
            present,
            row_end - row_count[present],
            row_end,
            token_end - token_count[present],
            token_end,
        ],
        1,
    )
    return CallRegion(
        tokens,
        rows,
        starts,
        row_place[0],
        token_place[0],
        row_place[1],
        row_place[2],
        token_place[1],
        token_place[2],
        runs,
    )


def records(kind: type[tuple], *columns: Iterable) -> list:
    """NamedTuples ``kind`` from columns of all their fields: ``tuple.__new__`` mapped over them
    skips the Python-level constructor of each (a plan makes hundreds)."""
    return list(map(tuple.__new__, itertools.repeat(kind), zip(*columns, strict=True)))


def slices(present: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> list:
    """A list as long as the bool array ``present``: at its j-th True, ``slice(starts[j],
    stops[j])``; None where it is False (few places: the rounds over the whole batch)."""
    bounds = np.zeros((2, len(present)), np.int64)
    bounds[:, present] = starts, stops
    parts = list(map(slice, *bounds.tolist()))
    for i in np.flatnonzero(~present).tolist():
        parts[i] = None
    return parts


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


def copy_group(layer: int, rows: np.ndarray, copied: dict[int, int], qsl: np.ndarray, add):
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
    spans = tuple(map(add, parts))
    return Group(layer, spans[0], spans[1:])

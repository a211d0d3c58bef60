"""Per-forward routing plan: which tokens run which layer, in which order, on which KV slot.

Built on the host from the persistent batch (request order = token order) by passes over the
batch's programs × steps (compiled: :mod:`vllm_polar.runtime.plan_passes`), and shipped to the
device in one transfer.  All tokens of a
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
  the one layer that the programs' next steps wait on most (each weighted by the fourth power
  of the steps it has left, so that the programs furthest from their end lead), and every
  program whose next step runs it takes that step.  Where many programs loop in different
  places this needs fewer rounds than by layer (a fifth to two fifths fewer for 64-1,024
  searched programs), but it costs a numpy pass per round to plan (~1 ms for 64-256
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
from vllm_polar.runtime import plan_passes as passes


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

MERGE_WEIGHT_POWER = 4
"""The merged order weighs a program that waits on a layer by its steps left to this power.
On the plan benchmark's searched programs (64-1,024 of them) the first power needs 12-24 %
more rounds (benchmarks/README.md, § Plan host cost)."""


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

    ``tokens`` None: every request of the batch, all on ``slot``, under the step's whole-batch
    metadata of that slot.  Otherwise it slices :attr:`Plan.token_index`: the requests'
    tokens, inside :attr:`Plan.call_region`, which holds the call's rows and their tokens'
    offsets too.
    """

    slot: int
    tokens: slice | None


class Round(NamedTuple):
    groups: tuple[Group, ...]
    call: Call


class CallRegion(NamedTuple):
    """Where the calls over part of the batch lie in :attr:`Plan.token_index`, and how the
    runner takes every row's block table and every token's slot mapping from its own slot.

    ``tokens``, ``rows``, ``starts``: every such call's tokens, batch rows and the offsets of
    its tokens within the call (one more than its rows) lie in these; ``call_rows`` and
    ``call_starts``, (calls, 2) host arrays in the order of :meth:`Plan.partial_calls`, say
    where each call's rows and offsets lie, as positions in ``rows`` and ``starts``.
    ``row_slots`` and ``token_slots``: the slot of each row of ``rows`` and each token of
    ``tokens``.
    ``row_order`` (positions in ``rows``) and ``rows_by_slot`` (those rows) list the rows
    slot after slot, ``token_order`` and ``tokens_by_slot`` the tokens; ``slot_runs`` is a
    (k, 5) host array of (slot, first and last + 1 position in the row order, the same in the
    token order) for the k slots present.
    """

    tokens: slice
    rows: slice
    starts: slice
    call_rows: np.ndarray
    call_starts: np.ndarray
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
            Round((Group(layer, None),), Call(slot, None))
            for layer, slot in zip(program, slots, strict=True)
        ],
        token_index=None,
    )


class Programs(NamedTuple):
    """A batch's distinct programs as arrays: how many steps each has, and the steps as flat
    *entries* (program-major, steps in order)."""

    sizes: np.ndarray
    """(P,) int64: each program's steps."""
    of_row: np.ndarray
    """(R,) int64: the program of each batch row."""
    ids: np.ndarray
    """(P,) the programs' ids in ``seen``."""
    seen: list[Program]
    """Every program of the table, by id (a plan reads only its few of them)."""
    program: np.ndarray
    """(n,) program of each entry."""
    step: np.ndarray
    layer: np.ndarray
    slot: np.ndarray
    """(n,) KV slot of each entry (:func:`vllm_polar.program.step_slots`)."""
    layer_key: np.ndarray
    """(n,) round key of each entry in the by-layer order (:func:`plan_passes.by_layer_keys`)."""
    num_slots: int

    @property
    def distinct(self) -> list[Program]:
        return [self.seen[i] for i in self.ids.tolist()]


FEW_PROGRAMS = 8
"""Up to this many new programs the table takes their slots program by program from
:func:`step_slots` (a few microseconds each); more, from :func:`entry_slots` at once."""


class ProgramTable:
    """The programs an engine has seen, each tabulated once: its steps' layers, slots and
    by-layer round keys, laid end to end in flat arrays.  Tabulating a batch is then a
    dictionary lookup per row and one compiled gather; a new program costs its own steps once.
    Holds at most ``capacity`` programs and as many program objects, then starts over."""

    def __init__(self, num_layers: int, num_slots: int, capacity: int = 1 << 16) -> None:
        self.num_layers, self.num_slots, self.capacity = num_layers, num_slots, capacity
        self.clear()

    def clear(self) -> None:
        self.ids: dict[Program, int] = {}
        self.programs: list[Program] = []
        self.by_object: dict[int, int] = {}
        """``id(program)`` -> the program's id, for the program objects in ``objects``: the
        runner hands the same object for a request at every step, and an object's id costs no
        hashing of its steps (a tuple's hash is not cached: ~0.6 us per program)."""
        self.objects: list[Program] = []
        """Keeps the objects of ``by_object`` alive, so that no other object takes their id."""
        self.offsets = np.zeros(64, np.int64)
        self.lengths = np.zeros(64, np.int64)
        self.marks = np.zeros(64, np.int64)
        """Scratch of :func:`plan_passes.gather_batch`, one per program, zero between calls."""
        self.steps = np.zeros((3, 1024), np.int32)
        """(3, capacity) int32 (a gather of half the bytes): layer, slot and by-layer round key
        of every step of every program, program after program; ``size`` of them in use."""
        self.size = 0

    def lookup(self, programs: Sequence[Program]) -> np.ndarray:
        """(R,) int64 id of each program, registering the ones not seen yet."""
        if max(len(self.ids), len(self.objects)) + len(programs) > self.capacity:
            self.clear()
        ids = np.fromiter(
            map(self.by_object.get, map(id, programs), itertools.repeat(-1)),
            np.int64,
            len(programs),
        )
        missing = np.flatnonzero(ids < 0).tolist()
        if missing:
            objects = {id(programs[i]): programs[i] for i in missing}
            new = list(dict.fromkeys(p for p in objects.values() if p not in self.ids))
            if new:
                self.register(new)
            self.by_object.update((key, self.ids[p]) for key, p in objects.items())
            self.objects.extend(objects.values())
            ids[missing] = [self.by_object[id(programs[i])] for i in missing]
        return ids

    def register(self, new: list[Program]) -> None:
        lengths = list(map(len, new))
        if max(lengths) > self.num_slots:
            raise ProgramError(
                f"a program of {max(lengths)} steps does not fit {self.num_slots} slots"
            )
        sizes = np.array(lengths)
        layer = np.fromiter(itertools.chain.from_iterable(new), np.int64, sum(lengths))
        if len(new) > FEW_PROGRAMS:
            program = np.repeat(np.arange(len(new)), sizes)
            step = np.arange(len(layer)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            slot = entry_slots(new, program, step, layer, self.num_layers, self.num_slots)
        else:
            slot = np.fromiter(
                itertools.chain.from_iterable(
                    step_slots(p, self.num_layers, self.num_slots) for p in new
                ),
                np.int64,
                len(layer),
            )
        keys = passes.by_layer_keys(layer, sizes, self.num_layers, self.num_slots)
        first, end = len(self.programs), len(self.programs) + len(new)
        self.offsets, self.lengths, self.marks = (
            grown(a, end) for a in (self.offsets, self.lengths, self.marks)
        )
        self.steps = grown(self.steps, self.size + len(layer))
        self.offsets[first:end] = self.size + np.cumsum(sizes) - sizes
        self.lengths[first:end] = sizes
        for row, values in enumerate((layer, slot, keys)):
            self.steps[row, self.size : self.size + len(layer)] = values
        self.size += len(layer)
        self.ids.update(zip(new, range(first, first + len(new)), strict=True))
        self.programs.extend(new)

    def tabulate(self, programs: Sequence[Program]) -> Programs:
        """The batch whose row i runs ``programs[i]``, as arrays; its distinct programs in
        order of first appearance, whatever the table saw before."""
        ids, of_row, sizes, program, step, layer, slot, key = passes.gather_batch(
            self.lookup(programs), self.offsets, self.lengths, self.steps, self.marks
        )
        return Programs(
            sizes, of_row, ids, self.programs, program, step, layer, slot, key, self.num_slots
        )


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
    # stable: a (program, layer)'s steps in order, its first run first
    by_key, _ = passes.counting_order(key, len(programs) * num_layers)
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


def by_step_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the by-step order: its step."""
    return programs.step


def by_step_floor(programs: Programs, costs: Costs) -> float:
    """The by-step order's cost without its metadata builds, from one count: its layer runs
    are the distinct (step, layer) pairs, its calls the longest program's steps."""
    pairs = np.bincount(programs.step * programs.num_slots + programs.layer)
    return np.count_nonzero(pairs) * costs.layer_run + programs.sizes.max() * costs.call


def by_layer_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the by-layer order (module docstring)."""
    return programs.layer_key


def merged_rounds(programs: Programs) -> np.ndarray:
    """(n,) round key of every entry in the merged order (module docstring): one pass over
    the programs still running per round."""
    lengths = programs.sizes
    upcoming = np.cumsum(lengths) - lengths  # each program's next entry
    left = lengths.copy()
    rounds = np.empty(len(programs.layer), np.int64)
    running = np.arange(len(lengths))
    for number in itertools.count():
        if not len(running):
            return rounds
        entries = upcoming[running]
        layers = programs.layer[entries]
        weights = left[running] ** MERGE_WEIGHT_POWER
        takes = layers == np.bincount(layers, weights=weights).argmax()
        rounds[entries[takes]] = number
        upcoming[running[takes]] += 1
        left[running[takes]] -= 1
        running = running[left[running] > 0]


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
    columns = passes.rank_rounds(
        round_key,
        programs.layer,
        programs.slot,
        programs.num_slots,
        len(programs.ids),
        layer_per_round,
    )
    everyone = columns[-1]
    order = Layout(*columns, int(len(everyone) - everyone.sum()))
    if len(order.group_round) * costs.layer_run + len(everyone) * costs.call > bound:
        return None
    return order


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
    if len(batch.ids) == 1 and not sources:
        return uniform_plan(batch.seen[batch.ids[0]], batch.slot.tolist())
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
    token of each row), entry after entry (:func:`plan_passes.expand`)."""

    rows: np.ndarray
    tokens: np.ndarray
    row_start: np.ndarray
    """(entries + 1,) where each entry's rows begin in ``rows``."""
    token_start: np.ndarray
    """(rows + 1,) where each row's tokens begin in ``tokens``."""


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
    if copied:
        uniform[order.group_round[list(copied)]] = False
    entry_round, entry_group, entry_program, entry_slot = passes.round_entries(
        order.by_group, order.round_of, order.group_of, table.program, table.slot, uniform
    )
    spread = Expansion(*passes.expand(entry_program, table.of_row, len(table.ids), query_start_loc))
    chunks = Chunks()
    if query_start_loc[-1] == len(table.of_row):  # one token per row: row i's is token i
        tokens = rows = chunks.add(spread.rows)
    else:
        tokens, rows = chunks.add(spread.tokens), chunks.add(spread.rows)
    token_at = spread.token_start[spread.row_start]  # where each expanded entry's tokens begin

    layers = order.group_layer.tolist()
    sliced = ~uniform[order.group_round]
    bounds = passes.spans(entry_group, num_groups, token_at) + tokens.start
    group_list = records(Group, layers, slices(sliced, bounds), itertools.repeat(None))
    for g in copied:
        at = np.flatnonzero(entry_group == g)
        group_rows = spread.rows[spread.row_start[at[0]] : spread.row_start[at[-1] + 1]]
        group_list[g] = copy_group(layers[g], group_rows, copied[g], query_start_loc, chunks.add)

    partial = ~order.everyone
    region = None
    call_tokens = [None] * num_rounds
    if partial.any():
        call_rows = passes.spans(entry_round, num_rounds, spread.row_start)
        within, starts_at = passes.call_starts(call_rows, partial, spread.token_start)
        starts = chunks.add(within)
        region = call_region(
            table, spread, entry_slot, (tokens, rows, starts), call_rows, starts_at, partial, chunks
        )
        # A round of one group (and no copies) has that group compute its call's tokens.
        if num_groups == num_rounds and not copied:
            call_tokens = [group.tokens for group in group_list]
        else:
            bounds = spread.token_start[call_rows] + tokens.start
            call_tokens = slices(partial, bounds)
    call_list = records(Call, order.call_slot.tolist(), call_tokens)

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
    entry_slot: np.ndarray,
    places: tuple[slice, slice, slice],
    call_rows: np.ndarray,
    call_starts: np.ndarray,
    partial: np.ndarray,
    chunks: Chunks,
) -> CallRegion:
    """The calls' region over the expanded entries (``entry_slot``: each one's slot): the slot
    of every row and token, and the rows and tokens slot after slot (:class:`CallRegion`).
    ``places``: where the expanded tokens, rows and the calls' offsets lie; ``call_rows`` and
    ``call_starts``: (2, rounds) each round's, read for the ``partial`` rounds."""
    row_slots = passes.per_row(entry_slot, spread.row_start)
    row_order, rows_by_slot, row_run = passes.by_slot(row_slots, spread.rows, table.num_slots)
    row_place = tuple(map(chunks.add, (row_slots, row_order, rows_by_slot)))
    if places[0] == places[1]:  # one token per row, row i's token i: tokens are the rows
        token_run, token_place = row_run, row_place
    elif len(spread.tokens) == len(spread.rows):  # one token per row: tokens follow the rows
        token_run = row_run
        token_place = (row_place[0], row_place[1], chunks.add(spread.tokens[row_order]))
    else:
        token_slots = np.repeat(row_slots, np.diff(spread.token_start))
        token_order, tokens_by_slot, token_run = passes.by_slot(
            token_slots, spread.tokens, table.num_slots
        )
        token_place = tuple(map(chunks.add, (token_slots, token_order, tokens_by_slot)))
    runs = passes.slot_runs(row_run, token_run)
    return CallRegion(
        *places,
        np.ascontiguousarray(call_rows[:, partial].T),
        np.ascontiguousarray(call_starts[:, partial].T),
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
    return list(map(tuple.__new__, itertools.repeat(kind), zip(*columns)))


def slices(present: np.ndarray, bounds: np.ndarray) -> list:
    """A list as long as the bool array ``present``: ``slice(*bounds[:, j])`` where it is True,
    None where it is False (few places: the rounds over the whole batch)."""
    parts = list(map(slice, *bounds.tolist()))
    for i in np.flatnonzero(~present).tolist():
        parts[i] = None
    return parts


def group_copies(
    table: Programs, order: Layout, sources: dict[int, list[int]]
) -> dict[int, dict[int, int]]:
    """Per group, its rows that copy the step from another row: {target row: source row}."""
    first_entry = np.cumsum(table.sizes) - table.sizes
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

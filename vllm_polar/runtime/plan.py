"""Per-forward routing plan: which tokens run which layer, in which order, on which KV slot.

Built on the host once per forward from the persistent batch (request order = token order)
and shipped to the device in a single transfer.  All tokens of a request share its program,
so every token set below is a union of whole requests' token ranges.

A forward is a sequence of *rounds*.  A round runs the QKV of some layers for some tokens
(``groups``), then attention calls on slots (``calls``), then the layers' output projection and
MLP.  Step k of a program always keeps its K/V in slot k.  An attention call covers exactly its
own requests: one over part of the batch gets attention metadata of those requests alone
(built by the runner, :mod:`vllm_polar.runtime.runner`), so it reads and writes nothing of the
others and costs what its tokens cost.  Two orders of rounds:

- *by step*: round k runs step k of every program, one group per distinct layer at step k and
  one attention call on slot k.  Few attention calls, but a layer run at different steps by
  different programs has its weights read once per step.
- *by layer* (passes): each round runs one layer for every program that runs it next, the
  lowest such layer first, with one attention call per distinct step among them.  A program
  that skipped ahead waits for the others and one that looped back catches up alone, so
  layers are read about once each (eight programs of mean length 24 over 24 layers: 34 layer
  runs instead of 87), at the price of more attention calls.

A batch of one program runs by step over the whole batch.  For mixed batches the plan takes
the order with the lower estimated cost.  Both orders attend every token once per step of its
program, so they differ only in fixed costs: layer runs (a read of the layer's weights) and
attention calls (a metadata build and a kernel launch), weighed by :data:`LAYER_RUN_CALLS`.

*Shared prefixes.*  Rows with the same token history (the runner says which: e.g. one prompt
prefilled under several programs) compute the same thing at step k as long as their programs
agree on steps 0..k.  There the lowest such row computes the step's QKV, output projection and
MLP, and the others copy its results; every row still takes part in the attention call, which
writes its own KV pages (read later, once the rows' tokens or programs part).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vllm_polar.program import Program

LAYER_RUN_CALLS = 8
"""Fixed cost of one layer run, in attention calls: by layer wins when it saves at least one
layer run per eight extra calls."""


@dataclass(frozen=True)
class Group:
    """Tokens that run ``layer`` in a round.  ``tokens`` slices :attr:`Plan.token_index`: the
    tokens the group computes; None means every token of the batch, in a round of this one group
    and one call.  ``copies`` (targets, sources), two slices of the same length: tokens of rows
    that share a program prefix take the results of these computed tokens instead."""

    layer: int
    tokens: slice | None
    copies: tuple[slice, slice] | None = None


@dataclass(frozen=True)
class Call:
    """An attention call on ``slot`` for the requests whose step ``slot`` this is.

    None for the slices: every request of the batch.  Otherwise they slice
    :attr:`Plan.token_index`: ``tokens`` the requests' tokens in batch order, ``rows`` their
    batch rows (ascending), ``starts`` the offsets of their tokens within the call (one more
    than rows).  Calls of one forward over the same requests share the slices.
    """

    slot: int
    tokens: slice | None
    rows: slice | None
    starts: slice | None


@dataclass(frozen=True)
class Round:
    groups: tuple[Group, ...]
    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Plan:
    """Routing for one forward: its rounds in order.

    ``token_index`` is a (T,) int64 device tensor holding the index arrays of every group, copy
    and call that does not cover the whole batch, concatenated; ``host_index`` is its host copy.
    ``call_attention`` maps a call's ``tokens.start`` to the attention metadata of its requests
    alone (filled in by the runner).
    """

    rounds: list[Round]
    token_index: torch.Tensor | None
    host_index: np.ndarray | None = None
    call_attention: dict[int, object] = field(default_factory=dict)

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
        """One call per distinct set of requests among the calls over part of the batch."""
        calls = (call for r in self.rounds for call in r.calls if call.tokens is not None)
        return list({call.tokens.start: call for call in calls}.values())


def uniform_plan(program: Program) -> Plan:
    """Every token runs the same program: round k is step k over the whole batch."""
    return Plan(
        rounds=[
            Round((Group(layer, None),), (Call(slot, None, None, None),))
            for slot, layer in enumerate(program)
        ],
        token_index=None,
    )


Schedule = list[tuple[dict[int, list[Program]], dict[int, list[Program]]]]
"""Rounds as ({layer: programs running it}, {slot: programs running that step})."""


def by_step(programs: list[Program]) -> Schedule:
    schedule: Schedule = []
    for step in range(max(len(p) for p in programs)):
        at_layer: dict[int, list[Program]] = defaultdict(list)
        for program in programs:
            if step < len(program):
                at_layer[program[step]].append(program)
        running = [p for p in programs if step < len(p)]
        schedule.append((dict(at_layer), {step: running}))
    return schedule


def by_layer(programs: list[Program]) -> Schedule:
    next_step = dict.fromkeys(programs, 0)
    schedule: Schedule = []
    while next_step:
        layer = min(program[step] for program, step in next_step.items())
        at_slot: dict[int, list[Program]] = defaultdict(list)
        for program, step in list(next_step.items()):
            if program[step] == layer:
                at_slot[step].append(program)
                if step + 1 == len(program):
                    del next_step[program]
                else:
                    next_step[program] = step + 1
        schedule.append(({layer: [p for ps in at_slot.values() for p in ps]}, dict(at_slot)))
    return schedule


def cost(schedule: Schedule) -> int:
    layer_runs = sum(len(at_layer) for at_layer, _ in schedule)
    calls = sum(len(at_slot) for _, at_slot in schedule)
    return layer_runs * LAYER_RUN_CALLS + calls


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
    histories: Sequence[Hashable | None] | None = None,
) -> Plan:
    """Plan for a batch whose row i runs ``programs[i]`` on tokens ``qsl[i]:qsl[i+1]``.

    ``query_start_loc`` is the (R+1,) int array of token offsets of the R rows.  Rows with
    equal, non-None ``histories[i]`` hold the same tokens at the same positions after the same
    token history, so they share the steps of their common program prefix.
    """
    rows_of: dict[Program, list[int]] = defaultdict(list)
    for row, program in enumerate(programs):
        rows_of[program].append(row)
    sources = prefix_sources(programs, histories) if histories is not None else {}
    if len(rows_of) == 1 and not sources:
        return uniform_plan(programs[0])

    schedule = min((by_step(list(rows_of)), by_layer(list(rows_of))), key=cost)
    chunks: list[np.ndarray] = []
    parts: dict[tuple[int, ...], tuple[slice, slice, slice]] = {}
    token_parts: dict[tuple[int, ...], slice] = {}

    def append(chunk: np.ndarray) -> slice:
        start = sum(map(len, chunks))
        chunks.append(chunk)
        return slice(start, start + len(chunk))

    def token_range(rows: Sequence[int]) -> np.ndarray:
        return np.concatenate([np.arange(query_start_loc[r], query_start_loc[r + 1]) for r in rows])

    def tokens(rows: tuple[int, ...]) -> slice:
        if rows not in token_parts:
            token_parts[rows] = append(token_range(rows))
        return token_parts[rows]

    def part(members: list[Program]) -> tuple[slice, slice, slice]:
        """Slices of the members' tokens, rows and call-local token offsets; built once."""
        rows = tuple(sorted(row for p in members for row in rows_of[p]))
        if rows not in parts:
            starts = np.cumsum([0, *(query_start_loc[r + 1] - query_start_loc[r] for r in rows)])
            parts[rows] = (tokens(rows), append(np.array(rows)), append(starts))
        return parts[rows]

    def group(layer: int, members: list[Program], step_of: dict[Program, int]) -> Group:
        """The group of ``members`` running ``layer``; rows sharing a prefix copy its source."""
        rows = sorted(row for p in members for row in rows_of[p])
        source = {row: sources[row][step_of[programs[row]]] for row in rows if row in sources}
        copied = {row: s for row, s in source.items() if s != row}
        computed = tuple(row for row in rows if row not in copied)
        if not copied:
            return Group(layer, tokens(computed))
        copies = (append(token_range(list(copied))), append(token_range(list(copied.values()))))
        return Group(layer, tokens(computed), copies)

    rounds = []
    for at_layer, at_slot in schedule:
        step_of = {p: slot for slot, members in at_slot.items() for p in members}
        groups = tuple(group(layer, at_layer[layer], step_of) for layer in sorted(at_layer))
        everyone = {slot: len(members) == len(rows_of) for slot, members in at_slot.items()}
        if len(groups) == 1 and groups[0].copies is None and all(everyone.values()):
            ((slot, _),) = at_slot.items()
            rounds.append(Round((Group(groups[0].layer, None),), (Call(slot, None, None, None),)))
            continue
        calls = tuple(
            Call(slot, None, None, None) if everyone[slot] else Call(slot, *part(at_slot[slot]))
            for slot in sorted(at_slot)
        )
        rounds.append(Round(groups, calls))
    host_index = np.concatenate(chunks).astype(np.int64)
    token_index = torch.from_numpy(host_index).to(device, non_blocking=True)
    return Plan(rounds=rounds, token_index=token_index, host_index=host_index)

"""Per-forward routing plan: which tokens run which layer, in which order, on which KV slot.

Built on the host once per forward from the persistent batch (request order = token order)
and shipped to the device in a single transfer.  All tokens of a request share its program,
so every token set below is a union of whole requests' token ranges.

A forward is a sequence of *rounds*.  A round runs the QKV of some layers for some tokens
(``groups``), then attention calls on slots (``calls``), then the layers' output projection and
MLP.  Step k of a program always keeps its K/V in slot k.  Two orders of rounds:

- *by step*: round k runs step k of every program, one group per distinct layer at step k and
  one attention call on slot k.  Few attention calls, but a layer run at different steps by
  different programs has its weights read once per step.
- *by layer* (passes): each round runs one layer for every program that runs it next, the
  lowest such layer first, with one attention call per distinct step among them.  A program
  that skipped ahead waits for the others and one that looped back catches up alone, so
  layers are read about once each (eight programs of mean length 24 over 24 layers: 34 layer
  runs instead of 87), at the price of more attention calls.

A batch of one program runs by step over the whole batch.  For mixed batches the plan takes
the order with the lower estimated cost: layer runs (weights read, or small matmuls) against
attention calls, each of which covers the whole batch (:data:`LAYER_RUN_TOKENS`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vllm_polar.program import Program

LAYER_RUN_TOKENS = 1024
"""Cost of one layer run, in tokens of one attention call (which covers every token of the
batch).  From the CPU benchmark's shapes: decode batches of a few mixed programs gain from the
by-layer order, prefill-heavy batches of many distinct programs lose from its extra calls."""


@dataclass(frozen=True)
class Group:
    """Tokens that run ``layer`` in a round.  ``tokens`` slices :attr:`Plan.token_index`;
    None means every token of the batch, in a round of this one group and one call."""

    layer: int
    tokens: slice | None


@dataclass(frozen=True)
class Call:
    """An attention call on ``slot``.  ``tokens`` (a slice of :attr:`Plan.token_index`) are
    the tokens whose step ``slot`` this is; None means all tokens of the round's groups, the
    only call of the round and the only call on this slot in the forward.  ``last``: no later
    round calls this slot."""

    slot: int
    tokens: slice | None
    last: bool


@dataclass(frozen=True)
class Round:
    groups: tuple[Group, ...]
    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Plan:
    """Routing for one forward: its rounds in order.

    ``token_index`` is a (T,) int64 device tensor holding the token indices of every group and
    call that does not cover the whole batch, concatenated.
    """

    rounds: list[Round]
    token_index: torch.Tensor | None

    def indices(self, part: Group | Call) -> torch.Tensor:
        """(n,) int64 token indices of a group or call over part of the batch."""
        assert self.token_index is not None and part.tokens is not None
        return self.token_index[part.tokens]


def uniform_plan(program: Program) -> Plan:
    """Every token runs the same program: round k is step k over the whole batch."""
    return Plan(
        rounds=[
            Round((Group(layer, None),), (Call(slot, None, True),))
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


def cost(schedule: Schedule, num_tokens: int) -> int:
    layer_runs = sum(len(at_layer) for at_layer, _ in schedule)
    calls = sum(len(at_slot) for _, at_slot in schedule)
    return layer_runs * LAYER_RUN_TOKENS + calls * num_tokens


def build_plan(
    programs: Sequence[Program], query_start_loc: np.ndarray, device: torch.device
) -> Plan:
    """Plan for a batch whose row i runs ``programs[i]`` on tokens ``qsl[i]:qsl[i+1]``.

    ``query_start_loc`` is the (R+1,) int array of token offsets of the R rows.
    """
    rows_of: dict[Program, list[int]] = defaultdict(list)
    for row, program in enumerate(programs):
        rows_of[program].append(row)
    if len(rows_of) == 1:
        return uniform_plan(programs[0])

    tokens_of = {
        program: np.concatenate(
            [np.arange(query_start_loc[r], query_start_loc[r + 1]) for r in rows]
        )
        for program, rows in rows_of.items()
    }
    num_tokens = int(query_start_loc[-1])
    schedule = min(
        (by_step(list(rows_of)), by_layer(list(rows_of))), key=lambda s: cost(s, num_tokens)
    )
    last_round = {slot: i for i, (_, at_slot) in enumerate(schedule) for slot in at_slot}
    calls_of = Counter(slot for _, at_slot in schedule for slot in at_slot)
    chunks: list[np.ndarray] = []
    offset = [0]

    def tokens(members: list[Program]) -> slice:
        chunks.append(np.concatenate([tokens_of[p] for p in members]))
        offset[0] += len(chunks[-1])
        return slice(offset[0] - len(chunks[-1]), offset[0])

    rounds = []
    for i, (at_layer, at_slot) in enumerate(schedule):
        slot = next(iter(at_slot))
        one_call = len(at_slot) == 1 and calls_of[slot] == 1
        if one_call and len(at_layer) == 1 and len(at_slot[slot]) == len(rows_of):
            rounds.append(Round((Group(next(iter(at_layer)), None),), (Call(slot, None, True),)))
            continue
        groups = tuple(Group(layer, tokens(at_layer[layer])) for layer in sorted(at_layer))
        if one_call:
            calls = (Call(slot, None, True),)
        else:
            calls = tuple(
                Call(slot, tokens(at_slot[slot]), last_round[slot] == i) for slot in sorted(at_slot)
            )
        rounds.append(Round(groups, calls))
    if not chunks:
        return Plan(rounds=rounds, token_index=None)
    token_index = torch.from_numpy(np.concatenate(chunks).astype(np.int64))
    return Plan(rounds=rounds, token_index=token_index.to(device, non_blocking=True))

"""Per-step routing plan: which tokens run which layer at each step of the slot loop.

Built on the host once per forward from the persistent batch (request order = token order)
and shipped to the device in a single transfer.  All tokens of a request share its program,
so every group is a union of whole requests' token ranges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vllm_polar.program import Program


@dataclass(frozen=True)
class Group:
    """Tokens that run ``layer`` at one step.

    ``tokens`` slices :attr:`Plan.token_index`; None means every token of the batch.
    """

    layer: int
    tokens: slice | None


@dataclass(frozen=True)
class Plan:
    """Routing for one forward.

    ``steps[k]`` lists the groups of step k, in ascending layer order (the same order on
    every tensor-parallel rank).  A token in no group of step k has finished its program.
    ``token_index`` is a (T,) int64 device tensor holding the token indices of all groups that
    do not cover the whole batch, concatenated.
    """

    steps: list[list[Group]]
    token_index: torch.Tensor | None

    def indices(self, group: Group) -> torch.Tensor:
        """(n,) int64 token indices of a split group."""
        assert self.token_index is not None and group.tokens is not None
        return self.token_index[group.tokens]


def uniform_plan(program: Program) -> Plan:
    """Every token runs the same program."""
    return Plan(steps=[[Group(layer, None)] for layer in program], token_index=None)


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
    chunks: list[np.ndarray] = []
    offset = 0
    steps: list[list[Group]] = []
    for step in range(max(len(p) for p in rows_of)):
        programs_at: dict[int, list[Program]] = defaultdict(list)
        for program in rows_of:
            if step < len(program):
                programs_at[program[step]].append(program)
        if len(programs_at) == 1 and all(step < len(p) for p in rows_of):
            steps.append([Group(next(iter(programs_at)), None)])
            continue
        groups = []
        for layer in sorted(programs_at):
            index = np.concatenate([tokens_of[p] for p in programs_at[layer]])
            groups.append(Group(layer, slice(offset, offset + len(index))))
            chunks.append(index)
            offset += len(index)
        steps.append(groups)
    token_index = torch.from_numpy(np.concatenate(chunks).astype(np.int64))
    return Plan(steps=steps, token_index=token_index.to(device, non_blocking=True))

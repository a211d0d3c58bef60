"""The segment form: the predictor's representation of a program.

A boundary mask over the ``D`` layers splits them into contiguous segments of at most ``K_MAX``
layers, and each segment gets an op: ``SKIP`` (run nothing), ``KEEP`` (run ``s..e-1``) or
``REPEAT`` (run ``s..e-1`` twice).  Every segment form is a program; a program has a segment
form only when it can be written that way (:func:`to_segments` finds the canonical one, or
returns ``None``).  Serving never needs it: the engine runs programs (:mod:`vllm_polar.program`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from vllm_polar.program import Program, ProgramError

K_MAX = 4
"""Longest segment the segment form allows (the paper's K_max)."""


class Op(enum.IntEnum):
    """What a segment does."""

    SKIP = 0
    KEEP = 1
    REPEAT = 2


@dataclass(frozen=True)
class SegmentForm:
    """Boundary mask over ``D`` layers plus one op per segment.

    ``boundaries[i]`` is True where a segment starts (``boundaries[0]`` is always True);
    ``ops[j]`` is the op of the j-th segment, so ``len(ops) == sum(boundaries)``.
    """

    boundaries: tuple[bool, ...]
    ops: tuple[Op, ...]

    def segments(self) -> list[tuple[int, int]]:
        """Half-open ``(start, end)`` layer ranges of the segments, in order."""
        starts = [i for i, b in enumerate(self.boundaries) if b]
        ends = starts[1:] + [len(self.boundaries)]
        return list(zip(starts, ends))

    def to_program(self) -> Program:
        return from_segments(self.boundaries, self.ops)


def from_segments(boundaries: Sequence[bool | int], ops: Sequence[Op | int]) -> Program:
    """The program a segment form computes; raises :class:`ProgramError` on a bad form."""
    num_layers = len(boundaries)
    if num_layers == 0 or not boundaries[0]:
        raise ProgramError("boundaries must be non-empty and start with a boundary at layer 0")
    form = SegmentForm(tuple(bool(b) for b in boundaries), tuple(Op(o) for o in ops))
    segments = form.segments()
    if len(segments) != len(form.ops):
        raise ProgramError(f"{len(segments)} segments but {len(form.ops)} ops")
    program: list[int] = []
    for (start, end), op in zip(segments, form.ops):
        if end - start > K_MAX:
            raise ProgramError(f"segment {start}-{end - 1} is longer than K_MAX = {K_MAX}")
        program.extend(list(range(start, end)) * int(op))
    return tuple(program)


def to_segments(program: Sequence[int], num_layers: int) -> SegmentForm | None:
    """Canonical segment form of ``program`` over ``num_layers`` layers, or None if it has none.

    Among all segment forms computing the program, returns one with the fewest segments, ties
    broken towards longer segments first (dynamic programming over (layer, step) positions).
    """
    n = len(program)
    # best[s][j]: (segments, form) for the layers s.. and program steps j.., or None.
    best: list[list[tuple[int, tuple[int, ...]] | None]] = [
        [None] * (n + 1) for _ in range(num_layers + 1)
    ]
    best[num_layers][n] = (0, ())
    for start in range(num_layers - 1, -1, -1):
        for j in range(n, -1, -1):
            choice = None
            for length in range(min(K_MAX, num_layers - start), 0, -1):
                block = tuple(range(start, start + length))
                for op in (Op.REPEAT, Op.KEEP, Op.SKIP):
                    used = length * int(op)
                    if used and (j >= n or program[j] != start):
                        continue  # a kept or repeated segment must start with its first layer
                    if tuple(program[j : j + used]) != block * int(op):
                        continue
                    rest = best[start + length][j + used]
                    if rest is None:
                        continue
                    candidate = (rest[0] + 1, (length, int(op), *rest[1]))
                    if choice is None or candidate[0] < choice[0]:
                        choice = candidate
            best[start][j] = choice
    if best[0][0] is None:
        return None
    encoded = best[0][0][1]
    boundaries = [False] * num_layers
    ops = []
    layer = 0
    for length, op in zip(encoded[::2], encoded[1::2]):
        boundaries[layer] = True
        ops.append(Op(op))
        layer += length
    return SegmentForm(tuple(boundaries), tuple(ops))

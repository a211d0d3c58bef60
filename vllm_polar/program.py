"""Programs of layers: the one place that defines them.

A *program* is a tuple of decoder-layer indices ``(i_1, ..., i_K)``; running it computes
``f_{i_K} ∘ … ∘ f_{i_1}``.  Layers may be skipped, repeated or reordered.

The *segment form* is what the predictor outputs: a boundary mask over the ``D`` layers splits
them into contiguous segments of at most ``K_MAX`` layers, and each segment gets an op:
``SKIP`` (run nothing), ``KEEP`` (run ``s..e-1``) or ``REPEAT`` (run ``s..e-1`` twice).
Every segment form is a program; a program has a segment form only when it can be written that
way (:func:`to_segments` finds the canonical one, or returns ``None``).

Text form (:func:`format_program` / :func:`parse_program`): comma-separated items; an item is a
layer ``a`` or an ascending run ``a-b`` (``a < b``), optionally followed by ``xN`` to repeat the
item ``N`` times.  ``"0-4,6-23"`` skips layer 5 of a 24-layer model, ``"0-5,5-23"`` runs layer 5
twice, ``"0-3,4-5x2,6-23"`` loops layers 4-5.  :func:`format_program` writes the canonical text
(maximal runs, identical adjacent runs merged), so ``parse_program(format_program(p)) == p``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Program = tuple[int, ...]

K_MAX = 4
"""Longest segment the segment form allows (the paper's K_max)."""

FIELD = "polar_program"
"""Name of the per-request field that carries a program (``SamplingParams.extra_args``)."""


class ProgramError(ValueError):
    """A program, its text or its segment form is invalid; the message says which limit."""


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


def identity(num_layers: int) -> Program:
    """The program that runs every layer once, in order."""
    if num_layers < 1:
        raise ProgramError(f"num_layers must be >= 1, got {num_layers}")
    return tuple(range(num_layers))


def num_steps(program: Sequence[int]) -> int:
    """Executed steps (layer calls) of a program."""
    return len(program)


def num_unique_layers(program: Sequence[int]) -> int:
    """Distinct layers a program touches."""
    return len(set(program))


def validate(value: Any, num_layers: int, max_steps: int | None = None) -> Program:
    """Check a user-given program and return it as a tuple.

    Raises :class:`ProgramError` naming ``polar_program`` and the violated limit when ``value``
    is not a non-empty list of ints in ``[0, num_layers)`` with at most ``max_steps`` entries.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ProgramError(f"{FIELD} must be a list of layer indices, got {type(value).__name__}")
    if len(value) == 0:
        raise ProgramError(f"{FIELD} must not be empty")
    for k, layer in enumerate(value):
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ProgramError(
                f"{FIELD}[{k}] must be an int layer index, got {type(layer).__name__} {layer!r}"
            )
        if not 0 <= layer < num_layers:
            raise ProgramError(
                f"{FIELD}[{k}] = {layer} is out of range: layer indices must be in "
                f"[0, {num_layers - 1}] for a model of {num_layers} layers"
            )
    if max_steps is not None and len(value) > max_steps:
        raise ProgramError(
            f"{FIELD} has {len(value)} steps, more than the engine's max_steps = {max_steps}"
        )
    return tuple(int(layer) for layer in value)


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


def format_program(program: Sequence[int]) -> str:
    """Canonical text form of a program (see the module docstring)."""
    if len(program) == 0:
        raise ProgramError("an empty program has no text form")
    runs: list[tuple[int, int]] = []
    for layer in program:
        if runs and layer == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], layer)
        else:
            runs.append((layer, layer))
    items: list[list] = []
    for run in runs:
        if items and items[-1][0] == run:
            items[-1][1] += 1
        else:
            items.append([run, 1])
    return ",".join(
        (str(a) if a == b else f"{a}-{b}") + (f"x{count}" if count > 1 else "")
        for (a, b), count in items
    )


_ITEM = re.compile(r"^(\d+)(?:-(\d+))?(?:x(\d+))?$")


def parse_program(text: str) -> Program:
    """Parse the text form; raises :class:`ProgramError` quoting the bad item."""
    program: list[int] = []
    for item in text.replace(" ", "").split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ProgramError(f"bad program item {item!r} in {text!r}: expected a, a-b or a-bxN")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        count = int(match[3]) if match[3] is not None else 1
        if last < first:
            raise ProgramError(f"bad program item {item!r}: a run a-b needs a <= b")
        if count < 1:
            raise ProgramError(f"bad program item {item!r}: repeat count must be >= 1")
        program.extend(list(range(first, last + 1)) * count)
    return tuple(program)

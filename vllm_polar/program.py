"""Programs of layers: the one place that defines them.

A *program* is a tuple of decoder-layer indices ``(i_1, ..., i_K)``; running it computes
``f_{i_K} ∘ … ∘ f_{i_1}``.  Layers may be skipped, repeated or reordered.

The predictor's own representation of programs (the segment form) lives with the predictor,
in :mod:`polar.predictor.segments`.

Text form (:func:`format_program` / :func:`parse_program`): comma-separated items; an item is a
layer ``a`` or an ascending run ``a-b`` (``a < b``), optionally followed by ``xN`` to repeat the
item ``N`` times.  ``"0-4,6-23"`` skips layer 5 of a 24-layer model, ``"0-5,5-23"`` runs layer 5
twice, ``"0-3,4-5x2,6-23"`` loops layers 4-5.  :func:`format_program` writes the canonical text
(maximal runs, identical adjacent runs merged), so ``parse_program(format_program(p)) == p``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

Program = tuple[int, ...]

FIELD = "polar_program"
"""Name of the per-request field that carries a program (``SamplingParams.extra_args``)."""


class ProgramError(ValueError):
    """A program or its text is invalid; the message says which limit."""


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


def step_slots(program: Sequence[int], num_layers: int, num_slots: int) -> tuple[int, ...]:
    """KV slot of each step of ``program`` on an engine of ``num_slots`` >= ``num_layers`` slots.

    The first run of layer ``l`` keeps its K/V in slot ``l``, so programs that skip different
    layers still meet in one attention call per layer; the r-th step that runs a layer again
    (r = 0, 1, ... over the program) in slot ``D + r``, so the same loop in two programs lands
    in the same slots.  A slot past S or already taken (only once the re-runs overflow) gives
    way to the lowest free slot.  A step's slot depends only on the steps before it: programs
    with a common prefix give its steps the same slots.  The identity runs on slots 0..D-1.
    """
    if len(program) > num_slots:
        raise ProgramError(f"a program of {len(program)} steps does not fit {num_slots} slots")
    seen: set[int] = set()
    taken: set[int] = set()
    slots = []
    lowest_free = 0  # slots are only ever taken, so the lowest free one only moves up
    for layer in program:
        slot = layer if layer not in seen else num_layers + len(slots) - len(seen)
        if slot >= num_slots or slot in taken:
            while lowest_free in taken:
                lowest_free += 1
            slot = lowest_free
        seen.add(layer)
        taken.add(slot)
        slots.append(slot)
    return tuple(slots)

"""The search space: which programs one MCTS action turns a program into.

An action edits the program's *steps* (not its layers): ``skip`` removes a contiguous block of
``k <= max_block`` steps; ``repeat`` runs a contiguous block of ``k <= max_block`` steps ``r``
times in a row (``2 <= r <= max_repeats``, ``r`` counts every execution). A child is kept only if
every layer runs at most ``max_layer_uses`` times and its step count lies in
``[min_steps, max_steps]``. The restricted spaces of the paper's Table 1 allow one kind only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from vllm_polar.program import Program

SPACES = ("skip_loop", "skip", "loop")
"""Skip&Loop (both actions), Skip-only, Loop-only."""


@dataclass(frozen=True)
class SearchSpace:
    """Action kinds and bounds; ``max_steps`` must not exceed the engine's slot count S."""

    kind: str = "skip_loop"
    max_block: int = 4
    max_repeats: int = 4
    max_layer_uses: int = 4
    min_steps: int = 1
    max_steps: int = 1

    def __post_init__(self) -> None:
        if self.kind not in SPACES:
            raise ValueError(f"unknown search space {self.kind!r}; known: {', '.join(SPACES)}")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"need 1 <= min_steps <= max_steps, got {self.min_steps} and {self.max_steps}"
            )
        if self.max_block < 1 or self.max_repeats < 2 or self.max_layer_uses < 1:
            raise ValueError("need max_block >= 1, max_repeats >= 2, max_layer_uses >= 1")

    @property
    def allows_skip(self) -> bool:
        return self.kind in ("skip_loop", "skip")

    @property
    def allows_repeat(self) -> bool:
        return self.kind in ("skip_loop", "loop")

    def admits(self, program: Program) -> bool:
        """Whether ``program`` respects the step budget and the per-layer use limit."""
        if not self.min_steps <= len(program) <= self.max_steps:
            return False
        return max(Counter(program).values()) <= self.max_layer_uses

    def children(self, program: Program) -> list[Program]:
        """Distinct admissible programs one action away, in a fixed order (skips first)."""
        candidates: list[Program] = []
        repeats = range(2, self.max_repeats + 1)
        for k in range(1, self.max_block + 1):
            for start in range(len(program) - k + 1):
                end = start + k
                head, block, tail = program[:start], program[start:end], program[end:]
                if self.allows_skip:
                    candidates.append(head + tail)
                if self.allows_repeat:
                    candidates.extend(head + block * r + tail for r in repeats)
        seen: set[Program] = {program}
        children = []
        for child in candidates:
            if child not in seen and self.admits(child):
                seen.add(child)
                children.append(child)
        return children

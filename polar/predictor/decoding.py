"""Program decoding: predictor logits -> the top-k distinct programs with scores.

Boundaries are decided first: a layer starts a segment when its boundary probability exceeds
the threshold, layer 0 always does, and where a segment would be longer than ``K_MAX`` a
boundary is inserted ``K_MAX`` layers after its start (the fewest insertions). Then the ops of
the segments are searched. The beam keeps, for every count of executed steps so far, the ``k``
best op prefixes; since a candidate's score is a sum over segments and the step budget and
length penalty depend only on the final step count, the beam returns exactly the ``k`` best
programs within the budget. For fixed boundaries, distinct op sequences are distinct programs.

Score of a candidate: log-probability of its boundary decisions (layers 1..D-1) plus the
log-probabilities of its segment ops, minus ``length_penalty`` per executed step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from polar.predictor.segments import K_MAX, Op, from_segments
from vllm_polar.program import Program, format_program

NUM_OPS = len(Op)


@dataclass(frozen=True)
class Candidate:
    """One decoded program, its canonical text form and its score (higher is better)."""

    program: Program
    text: str
    score: float

    def to_json(self) -> dict:
        return {"program": list(self.program), "text": self.text, "score": self.score}


def decode_boundaries(boundary_logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boundary mask ``[D]`` (bool) from boundary logits ``[D]``; segments <= ``K_MAX``."""
    boundaries = boundary_logits > math.log(threshold / (1.0 - threshold))
    boundaries[0] = True
    start = 0
    for layer in range(1, len(boundaries)):
        if boundaries[layer]:
            start = layer
        elif layer - start >= K_MAX:
            boundaries[layer] = True
            start = layer
    return boundaries


def boundary_log_prob(boundary_logits: np.ndarray, boundaries: np.ndarray) -> float:
    """Log-probability of the boundary decisions at layers 1..D-1 (layer 0 is forced)."""
    signed = np.where(boundaries, boundary_logits, -boundary_logits)[1:]
    return float(-np.logaddexp(0.0, -signed).sum())


def search_ops(
    segment_lengths: np.ndarray,
    op_log_probs: np.ndarray,
    k: int,
    min_steps: int,
    max_steps: int,
    length_penalty: float,
) -> list[tuple[float, list[int]]]:
    """The ``k`` best op sequences with ``min_steps <= steps <= max_steps``, best first.

    ``segment_lengths``: ``[S]`` layers per segment; ``op_log_probs``: ``[S, 3]``. Returns
    ``(score, ops)`` pairs (``S`` ints), score = sum of op log-probs - ``length_penalty`` * steps;
    fewer than ``k`` when fewer sequences fit the budget.
    """
    width = NUM_OPS * k  # candidates per step count: (op, parent rank)
    row_offsets = np.arange(max_steps + 1)[:, None] * width
    reach = 0  # most steps a prefix can have so far
    costs = np.full((1, k), np.inf)  # [steps so far, rank] -> -(sum of op log-probs)
    costs[0, 0] = 0.0
    history = []  # per segment: [steps, rank] -> op * k + parent rank
    for length, op_costs in zip(segment_lengths.tolist(), -op_log_probs):
        new_reach = min(max_steps, reach + 2 * length)
        candidates = np.full((new_reach + 1, width), np.inf)
        for op in range(NUM_OPS):
            shift = length * op
            end = min(new_reach, reach + shift) + 1
            if shift < end:
                candidates[shift:end, op * k : (op + 1) * k] = costs[: end - shift] + op_costs[op]
        order = np.argsort(candidates, axis=1, kind="stable")[:, :k]
        costs = candidates.ravel()[order + row_offsets[: new_reach + 1]]
        history.append(order)
        reach = new_reach
    totals = costs + length_penalty * np.arange(reach + 1)[:, None]
    totals[:min_steps] = np.inf
    flat_totals = totals.ravel()
    best = np.argsort(flat_totals, kind="stable")[:k]
    best = best[np.isfinite(flat_totals[best])]
    steps, rank = np.divmod(best, k)
    ops = np.empty((len(best), len(segment_lengths)), dtype=np.int64)
    for segment in range(len(segment_lengths) - 1, -1, -1):
        op, rank = np.divmod(history[segment][steps, rank], k)
        steps = steps - segment_lengths[segment] * op
        ops[:, segment] = op
    return list(zip((-flat_totals[best]).tolist(), ops.tolist()))


def decode(
    boundary_logits: np.ndarray,
    op_logits: np.ndarray,
    k: int,
    *,
    threshold: float = 0.5,
    min_steps: int = 1,
    max_steps: int | None = None,
    length_penalty: float = 0.0,
) -> list[Candidate]:
    """Top-``k`` distinct programs for one input, best first.

    ``boundary_logits``: ``[D]``; ``op_logits``: ``[D, 3]`` (skip/keep/repeat at each layer,
    read at segment starts). ``max_steps`` defaults to ``2 * D`` (no budget).
    """
    num_layers = len(boundary_logits)
    max_steps = 2 * num_layers if max_steps is None else max_steps
    check_options(k, threshold, min_steps, max_steps)
    boundaries = decode_boundaries(boundary_logits, threshold)
    starts = np.flatnonzero(boundaries)
    lengths = np.diff(np.append(starts, num_layers))
    start_logits = op_logits[starts]
    op_log_probs = start_logits - np.logaddexp.reduce(start_logits, axis=1, keepdims=True)
    base = boundary_log_prob(boundary_logits, boundaries)
    candidates = []
    boundary_list = boundaries.tolist()
    for score, ops in search_ops(lengths, op_log_probs, k, min_steps, max_steps, length_penalty):
        program = from_segments(boundary_list, ops)
        candidates.append(Candidate(program, format_program(program), base + score))
    return candidates


def decode_batch(
    boundary_logits: torch.Tensor, op_logits: torch.Tensor, k: int, **options
) -> list[list[Candidate]]:
    """:func:`decode` for each row of ``boundary_logits [B, D]`` and ``op_logits [B, D, 3]``."""
    boundary_rows = boundary_logits.detach().to("cpu", torch.float64).numpy()
    op_rows = op_logits.detach().to("cpu", torch.float64).numpy()
    return [decode(b, o, k, **options) for b, o in zip(boundary_rows, op_rows)]


def check_options(k: int, threshold: float, min_steps: int, max_steps: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")

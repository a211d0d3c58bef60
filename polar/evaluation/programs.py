"""Programs of the control methods: random segment forms of a given length, and ShortGPT.

*Random programs* are drawn uniformly over the predictor's space — segment forms (segments of
at most ``K_MAX`` layers, each skipped, kept or repeated) — among those with exactly n
executed steps (:class:`SegmentFormSampler`, exact counting by dynamic programming).

*ShortGPT* (Men et al., 2024) removes the layers with the lowest Block Influence,
``BI_i = 1 - E_tokens[cos(x_i, x_{i+1})]`` where ``x_i`` is the hidden state entering layer i,
measured on prompts (:func:`block_influence`), down to a step count (:func:`shortgpt_program`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from polar.predictor.segments import K_MAX, Op, from_segments
from vllm_polar.program import Program

RETRIES = 100
"""Draws per program before a question settles for fewer distinct random programs."""


class SegmentFormSampler:
    """Uniform draws over the segment forms of ``num_layers`` layers with a given step count."""

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers

    @cached_property
    def counts(self) -> list[list[int]]:
        """``counts[layer][steps]``: segment forms of layers ``layer..D-1`` with ``steps``
        executed steps (steps up to 2 D, the most a form can run)."""
        depth = self.num_layers
        counts = [[0] * (2 * depth + 1) for _ in range(depth + 1)]
        counts[depth][0] = 1
        for layer in range(depth - 1, -1, -1):
            for length in range(1, min(K_MAX, depth - layer) + 1):
                for op in Op:
                    used = length * int(op)
                    for steps in range(used, 2 * depth + 1):
                        counts[layer][steps] += counts[layer + length][steps - used]
        return counts

    def draw(self, steps: int, rng: random.Random) -> Program:
        """One uniformly drawn segment form with exactly ``steps`` steps, as a program."""
        if not 0 < steps <= 2 * self.num_layers or self.counts[0][steps] == 0:
            raise ValueError(f"no segment form of {self.num_layers} layers runs {steps} steps")
        boundaries, ops = [False] * self.num_layers, []
        layer, left = 0, steps
        while layer < self.num_layers:
            choices = [
                (length, op)
                for length in range(1, min(K_MAX, self.num_layers - layer) + 1)
                for op in Op
                if left >= length * int(op)
            ]
            weights = [self.counts[layer + n][left - n * int(op)] for n, op in choices]
            length, op = rng.choices(choices, weights)[0]
            boundaries[layer] = True
            ops.append(op)
            layer, left = layer + length, left - length * int(op)
        return from_segments(boundaries, ops)

    def distinct(self, steps: Sequence[int], rng: random.Random) -> list[Program]:
        """One program per entry of ``steps``, all distinct (fewer if the space runs out)."""
        chosen: list[Program] = []
        for count in steps:
            for _ in range(RETRIES):
                program = self.draw(count, rng)
                if program not in chosen:
                    chosen.append(program)
                    break
        return chosen


def block_influence(model_path: str | Path, prompts: Sequence[str]) -> list[float]:
    """Per layer, ``1 - mean cos(input, output)`` over every token of ``prompts`` (float32,
    transformers, one prompt at a time)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    layers = model.model.layers
    sums = [0.0] * len(layers)
    tokens = 0

    def hook(index: int):
        def record(module, args, kwargs, output):
            before = args[0] if args else kwargs["hidden_states"]
            after = output[0] if isinstance(output, tuple) else output
            cosine = torch.nn.functional.cosine_similarity(before[0], after[0], dim=-1)
            sums[index] += float((1.0 - cosine).sum())

        return record

    handles = [
        layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    try:
        with torch.inference_mode():
            for prompt in prompts:
                ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
                model(input_ids=ids)
                tokens += ids.shape[1]
    finally:
        for handle in handles:
            handle.remove()
    return [total / tokens for total in sums]


def shortgpt_program(influence: Sequence[float], steps: int) -> Program:
    """The layers in order without the ``D - steps`` of lowest influence (all when ``steps``
    is at least D: ShortGPT only removes)."""
    depth = len(influence)
    removed = sorted(range(depth), key=lambda i: influence[i])[: max(0, depth - steps)]
    return tuple(i for i in range(depth) if i not in removed)

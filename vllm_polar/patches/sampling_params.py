"""Patch ``SamplingParams._verify_greedy_sampling``: allow ``n > 1`` with greedy sampling.

PoLar's pass@k runs the k completions of an ``n = k`` request greedily, each under another
program, which vLLM rejects when the params are built.  The rule moves to the front end
(:func:`check_greedy_n`), which applies it unchanged to engines without PoLar.
"""

from __future__ import annotations

import functools

from vllm.sampling_params import SamplingParams

_original = SamplingParams._verify_greedy_sampling


def check_greedy_n(params: SamplingParams) -> None:
    """vLLM's own check: greedy sampling with ``n > 1`` (raises VLLMValidationError)."""
    if params.temperature < 1e-5:
        _original(params)


def apply() -> None:
    if getattr(SamplingParams._verify_greedy_sampling, "polar_patched", False):
        return

    @functools.wraps(_original)
    def _verify_greedy_sampling(self) -> None:
        return None

    _verify_greedy_sampling.polar_patched = True
    SamplingParams._verify_greedy_sampling = _verify_greedy_sampling

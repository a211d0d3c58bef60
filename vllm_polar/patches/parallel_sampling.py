"""Patch ``ParentRequest._get_child_sampling_params``: child i of an ``n = k`` request runs
the i-th of its programs (the predictor's top-k: the paper's pass@k).

vLLM fans ``n > 1`` out into n child requests with copies of the parent's params; without
this every child would run the parent's first program.
"""

from __future__ import annotations

import functools

from vllm.v1.engine.parallel_sampling import ParentRequest

from vllm_polar.program import FIELD
from vllm_polar.runtime.requests import child_programs


def apply() -> None:
    original = ParentRequest._get_child_sampling_params
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def _get_child_sampling_params(self, index: int):
        programs = child_programs(self.sampling_params.extra_args)
        if programs is None:
            return original(self, index)
        child = original(self, index).clone()
        child.extra_args = {**self.sampling_params.extra_args, FIELD: programs[index]}
        return child

    _get_child_sampling_params.polar_patched = True
    ParentRequest._get_child_sampling_params = _get_child_sampling_params

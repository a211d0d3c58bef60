"""Patch ``GPUModelRunner``: hand the PoLar model its routing plan, and log the KV pool at start.

The V1 runner (also the CPU runner's base) has no hook for per-request data in the forward;
``_init_model_kwargs`` runs after ``_prepare_inputs``, when the batch order and token ranges
of this step are final.  Warm-up and profiling runs call it with ``num_reqs=0``: no plan.
``initialize_kv_cache`` is where the worker learns the pool: vLLM's own start-up line counts
tokens as if every request held pages in all S slots, so the pool is logged again in pages.
"""

from __future__ import annotations

import functools

from vllm.v1.worker.gpu_model_runner import GPUModelRunner

from vllm_polar import config as polar_config
from vllm_polar.runtime.runner import log_kv_pool, plan_for_batch


def apply() -> None:
    original = GPUModelRunner._init_model_kwargs
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def _init_model_kwargs(self, num_reqs: int | None = None):
        kwargs = original(self, num_reqs)
        config = polar_config.from_additional_config(self.vllm_config.additional_config)
        if config is not None and num_reqs is None:
            kwargs["polar_plan"] = plan_for_batch(self, config)
        return kwargs

    _init_model_kwargs.polar_patched = True
    GPUModelRunner._init_model_kwargs = _init_model_kwargs

    initialize_kv_cache = GPUModelRunner.initialize_kv_cache

    @functools.wraps(initialize_kv_cache)
    def initialize_kv_cache_and_log(self, kv_cache_config, is_profiling: bool = False, **kwargs):
        initialize_kv_cache(self, kv_cache_config, is_profiling, **kwargs)
        config = polar_config.from_additional_config(self.vllm_config.additional_config)
        if config is not None and not is_profiling:
            log_kv_pool(self, config)

    GPUModelRunner.initialize_kv_cache = initialize_kv_cache_and_log

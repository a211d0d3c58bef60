"""Patch ``PrometheusStatLogger.record`` to export the KV pages held per program step count.

vLLM's Prometheus logger is what ``vllm serve`` builds when stats are on, and it records every
``SchedulerStats`` the engine cores send; the pages arrive in the field that
:mod:`vllm_polar.patches.scheduler_stats` adds.  A stat-logger plugin would need no patch, but
in vLLM 0.32 installing one turns stats on for every async engine, ``--disable-log-stats`` or
not; patching the Prometheus logger keeps that flag meaning what it says.
"""

from __future__ import annotations

import functools

from vllm.v1.metrics.loggers import PrometheusStatLogger

from vllm_polar import metrics
from vllm_polar.patches.scheduler_stats import FIELD


def apply() -> None:
    original = PrometheusStatLogger.record
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
        original(self, scheduler_stats, iteration_stats, mm_cache_stats, engine_idx)
        if scheduler_stats is not None:
            metrics.record_kv_pages(getattr(scheduler_stats, FIELD, {}), engine_idx)

    record.polar_patched = True
    PrometheusStatLogger.record = record

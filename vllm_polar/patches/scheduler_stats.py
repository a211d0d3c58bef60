"""Patch vLLM's scheduler stats to carry the KV pages held per program step count.

The pages live in the engine core's per-slot KV managers (:mod:`vllm_polar.runtime.kv`); the
front end, which serves ``/metrics``, sees only the ``SchedulerStats`` the engine core sends
with its outputs: a dataclass of fixed fields that vLLM's msgpack codec encodes and decodes
field by field.  So ``SchedulerStats`` gains one field, ``polar_kv_pages`` ({steps: pages},
empty on a stock engine), declared in every process before a stats object is encoded or
decoded (the plugin loads first), and ``Scheduler.make_stats`` fills it.
"""

from __future__ import annotations

import dataclasses
import functools

from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.metrics.stats import SchedulerStats

from vllm_polar.runtime import kv

FIELD = "polar_kv_pages"


def add_field() -> None:
    """Declare ``SchedulerStats.polar_kv_pages`` (a stats object built without it encodes
    without it and decodes with the default, an empty dict)."""
    if FIELD in SchedulerStats.__dataclass_fields__:
        return
    field = dataclasses.field(default_factory=dict)
    field.name = FIELD
    field.type = dict[int, int]
    field._field_type = dataclasses._FIELD  # what dataclasses.fields() and the codec list
    SchedulerStats.__dataclass_fields__[FIELD] = field
    SchedulerStats.__annotations__[FIELD] = dict[int, int]


def apply() -> None:
    add_field()
    original = Scheduler.make_stats
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def make_stats(self, *args, **kwargs):
        stats = original(self, *args, **kwargs)
        if stats is None:  # stats off
            return None
        managers = self.kv_cache_manager.coordinator.single_type_managers
        if all(isinstance(manager, kv.SlotManager) for manager in managers):  # a PoLar engine
            setattr(stats, FIELD, kv.pages_by_steps(managers, self.requests))
        return stats

    make_stats.polar_patched = True
    Scheduler.make_stats = make_stats

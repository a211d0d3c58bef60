"""KV pages per program step: a request holds pages only in the slots its program uses.

Every slot attention is a KV-cache group of its own (one block table per slot), and all S
groups draw pages from one pool, the way vLLM's hybrid allocator serves models that mix
attention types.  A page holds one block of tokens of one slot, so a request whose program uses
K slots holds K pages per block of its tokens: the identity program (slots 0..D-1) costs what
a stock request costs, a program of half the layers half of it.  The scheduler admits, grows
and preempts requests by that count, because it asks every group's manager for its blocks.

Which slots a request uses is known where the engine core builds the request
(:func:`track`): its block-hash list is tagged with the slot set, and kept (weakly) by request
id for the managers, whose allocation calls carry only the id.  A request the managers do not
know (none in practice) holds pages in every slot, which is always correct.

Prefix caching stays per slot: a group caches its blocks under the request's block hashes,
which already carry the program (``cache_salt``), and a cache hit counts only in the slots the
request uses.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable, Sequence

from vllm.v1.core.single_type_kv_cache_manager import FullAttentionManager
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheSpec
from vllm.v1.kv_cache_spec_registry import KVCacheSpecRegistry


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlotSpec(FullAttentionSpec):
    """The KV-cache spec of slot ``slot``: full attention whose pages only the requests that
    run a step in this slot hold.  Specs of different slots never share a group."""

    slot: int = 0

    @classmethod
    def merge(cls, specs: list[SlotSpec]) -> SlotSpec:
        if len(set(specs)) != 1:  # equal specs are the same slot
            # vLLM reads an AssertionError as "these layers cannot share a group".
            raise AssertionError("PoLar slots keep one KV-cache group each")
        return specs[0]

    def is_uniform_with_collection(self, kv_cache_specs: dict[str, KVCacheSpec]) -> bool:
        return False


def slot_spec(spec: FullAttentionSpec, slot: int) -> SlotSpec:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.init}
    return SlotSpec(**fields, slot=slot)


class SlotHashes(list):
    """A request's block-hash list (vLLM appends to it as tokens arrive), tagged with the
    slots its program uses."""

    slots: frozenset[int]


_tracked: weakref.WeakValueDictionary[str, SlotHashes] = weakref.WeakValueDictionary()


def track(request, slots: Iterable[int]) -> None:
    """Tag the engine-core ``request`` with the slots its program uses (kept while it lives)."""
    hashes = SlotHashes(request.block_hashes)
    hashes.slots = frozenset(slots)
    request.block_hashes = hashes
    _tracked[request.request_id] = hashes


def slots_of(request_id: str) -> frozenset[int] | None:
    """The slots of a tracked request; None for one not tracked."""
    hashes = _tracked.get(request_id)
    return None if hashes is None else hashes.slots


class SlotManager(FullAttentionManager):
    """Full-attention pages of one slot, for the requests whose programs use the slot."""

    def holds(self, request_id: str) -> bool:
        slots = slots_of(request_id)
        return slots is None or self.kv_cache_spec.slot in slots

    def get_num_blocks_to_allocate(self, request_id: str, *args, **kwargs) -> int:
        if not self.holds(request_id):
            return 0
        return super().get_num_blocks_to_allocate(request_id, *args, **kwargs)

    def add_local_computed_blocks(self, request_id: str, new_computed_blocks, *args) -> None:
        if not self.holds(request_id):
            new_computed_blocks = []  # its cache hit was counted as empty here
        super().add_local_computed_blocks(request_id, new_computed_blocks, *args)

    def allocate_external_computed_blocks(self, request_id: str, *args, **kwargs) -> None:
        if self.holds(request_id):
            super().allocate_external_computed_blocks(request_id, *args, **kwargs)

    def allocate_new_blocks(self, request_id: str, *args, **kwargs) -> list:
        if not self.holds(request_id):
            return []
        return super().allocate_new_blocks(request_id, *args, **kwargs)

    def cache_blocks(self, request, *args, **kwargs) -> None:
        if self.holds(request.request_id):
            super().cache_blocks(request, *args, **kwargs)

    @classmethod
    def find_longest_cache_hit(
        cls,
        block_hashes: Sequence,
        max_length: int,
        kv_cache_group_ids: list[int],
        block_pool,
        kv_cache_spec: SlotSpec,
        *args,
        **kwargs,
    ):
        slots = getattr(block_hashes, "slots", None)
        if slots is not None and kv_cache_spec.slot not in slots:
            # The request holds no pages here, so any length is a hit for this slot.
            aligned = max_length - max_length % kv_cache_spec.block_size
            return tuple([] for _ in kv_cache_group_ids), aligned
        return super().find_longest_cache_hit(
            block_hashes, max_length, kv_cache_group_ids, block_pool, kv_cache_spec, *args, **kwargs
        )


def pages_by_steps(managers: Sequence[SlotManager], request_ids: Iterable[str]) -> dict[int, int]:
    """KV pages the requests ``request_ids`` hold, summed by their programs' step counts:
    {K: pages}.  A request holds as many pages in each of its K slots, so this reads one slot
    per request.  A page shared through the prefix cache counts for every request holding it."""
    by_slot = {manager.kv_cache_spec.slot: manager for manager in managers}
    pages: dict[int, int] = {}
    for request_id in request_ids:
        slots = slots_of(request_id) or by_slot.keys()  # untracked: every slot
        blocks = by_slot[min(slots)].req_to_blocks.get(request_id)
        if blocks:
            pages[len(slots)] = pages.get(len(slots), 0) + len(slots) * len(blocks)
    return pages


def register() -> None:
    """Register :class:`SlotSpec` with its manager (after vLLM's own specs, which register
    lazily on the registry's first use)."""
    KVCacheSpecRegistry.check_kv_cache_spec_registry({})
    KVCacheSpecRegistry.register(SlotSpec, SlotManager, uniform_type_base_spec=SlotSpec)


register()

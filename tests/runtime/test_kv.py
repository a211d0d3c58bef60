"""KV pages per program step: a request holds pages only in the slots its program uses, all
slots draw from one pool, and outputs stay exact under KV pressure (queueing, preemption and
recompute, chunked prefill, prefix hits)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from vllm import LLM

from tests.runtime.conftest import (
    MAX_STEPS,
    PROGRAMS,
    generate,
    greedy,
    prompt_ids,
    start_engine,
    stop_engine,
)
from tests.runtime.test_equivalence import assert_matches_reference
from tests.runtime.tiny import NUM_LAYERS
from vllm_polar.models.executor import SlotAttention
from vllm_polar.program import step_slots
from vllm_polar.runtime.runner import check_shared_pool

BLOCK = 32  # the smallest block the CPU attention backend takes
POOL_PAGES = 64
"""Pages of the tight engine's pool: the pressure test's requests need ~150 at once."""


@pytest.fixture(scope="module")
def tight_engine(checkpoints) -> Iterator[LLM]:
    """A PoLar engine with the engine core in this process (its scheduler is inspected) and a
    pool far smaller than the pressure test's batch needs."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        llm = start_engine(
            checkpoints("qwen3"),
            {"max_steps": MAX_STEPS},
            block_size=BLOCK,
            num_gpu_blocks_override=POOL_PAGES,
            max_model_len=128,
            max_num_batched_tokens=2 * BLOCK,
            enable_chunked_prefill=True,
            enable_prefix_caching=True,
            disable_log_stats=False,
        )
    yield llm
    stop_engine(llm)


def scheduler(llm: LLM):
    return llm.llm_engine.engine_core.engine_core.scheduler


def counter(llm: LLM, name: str) -> float:
    return sum(m.value for m in llm.get_metrics() if m.name == name)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_request_holds_pages_only_in_its_programs_slots(tight_engine, name):
    program = PROGRAMS[name]
    engine = tight_engine.llm_engine
    managers = scheduler(tight_engine).kv_cache_manager.coordinator.single_type_managers
    pool = scheduler(tight_engine).kv_cache_manager.block_pool
    free_before = pool.get_num_free_blocks()
    request_id = f"pages-{name}"
    prompt = prompt_ids(40 + len(name), 2 * BLOCK)  # one chunk: two blocks
    engine.add_request(request_id, {"prompt_token_ids": prompt}, greedy(program, 2))
    engine.step()
    [internal_id] = [r for r in scheduler(tight_engine).requests if r.startswith(request_id)]
    held = {m.kv_cache_spec.slot: len(m.req_to_blocks.get(internal_id, [])) for m in managers}
    taken = free_before - pool.get_num_free_blocks()
    while engine.has_unfinished_requests():
        engine.step()
    slots = set(step_slots(program, NUM_LAYERS, MAX_STEPS))
    assert {slot for slot, blocks in held.items() if blocks} == slots
    assert all(held[slot] == 2 for slot in slots)
    assert taken == 2 * len(slots)


def test_outputs_stay_exact_when_the_pool_forces_preemption(tight_engine, references):
    """Six programs with 70-80-token prompts (prefilled in 64-token chunks) and 24 new tokens
    each need ~150 pages at once in a pool of 64: requests queue, and running ones are
    preempted and recomputed.  Then one of them, run twice, hits its own cached prefix."""
    programs = list(PROGRAMS.values())
    prompts = [prompt_ids(60 + i, 70 + 2 * i) for i in range(len(programs))]
    preempted = counter(tight_engine, "vllm:num_preemptions")
    results = generate(tight_engine, prompts, [greedy(p, 24) for p in programs])
    assert counter(tight_engine, "vllm:num_preemptions") > preempted, "no request was preempted"
    for prompt, program, result in zip(prompts, programs, results):
        assert_matches_reference(references("qwen3"), prompt, program, result)
    for _ in range(2):  # the first run caches its blocks (the batch's may have been evicted)
        [output] = tight_engine.generate(
            [{"prompt_token_ids": prompts[1]}], [greedy(programs[1], 24)], use_tqdm=False
        )
    assert output.num_cached_tokens >= BLOCK
    tokens = list(output.outputs[0].token_ids)
    logprobs = [step[t].logprob for step, t in zip(output.outputs[0].logprobs, tokens)]
    assert_matches_reference(references("qwen3"), prompts[1], programs[1], (tokens, logprobs))


def test_every_slots_cache_is_a_view_of_one_pool(tight_engine):
    """What lets one attention call serve requests on different slots: vLLM lays all slot
    groups out from byte 0 of the same tensor, with one page layout."""
    executor = tight_engine.llm_engine.engine_core.engine_core.model_executor
    context = executor.driver_worker.worker.model_runner.compilation_config.static_forward_context
    caches = [layer.kv_cache for layer in context.values() if isinstance(layer, SlotAttention)]
    assert len(caches) == MAX_STEPS
    assert len({(c.data_ptr(), tuple(c.shape), c.stride()) for c in caches}) == 1


def test_slots_whose_caches_are_not_one_pool_are_refused():
    pool = torch.zeros(2, 8, 4)

    def runner_with(*caches: torch.Tensor) -> SimpleNamespace:
        layers = {}
        for k, cache in enumerate(caches):
            layer = SlotAttention.__new__(SlotAttention)
            torch.nn.Module.__init__(layer)
            layer.kv_cache = cache
            layers[f"model.polar_slots.{k}"] = layer
        return SimpleNamespace(compilation_config=SimpleNamespace(static_forward_context=layers))

    check_shared_pool(runner_with(pool, pool.view(2, 8, 4)))
    with pytest.raises(RuntimeError, match="one pool"):
        check_shared_pool(runner_with(pool, torch.zeros(2, 8, 4)))

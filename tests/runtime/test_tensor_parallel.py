"""Tensor parallelism: PoLar at ``tensor_parallel_size=2`` (one CPU process per rank) matches
the reference, dense and MoE, with mixed programs in one batch."""

from __future__ import annotations

import pytest

from tests.runtime.conftest import (
    MAX_STEPS,
    start_engine,
    stop_engine,
)
from tests.runtime.test_equivalence import assert_mixed_batch_matches_reference


@pytest.fixture(scope="module", params=["qwen3", "qwen3_moe"])
def tp2_engine(request, checkpoints, monkeypatch_module):
    monkeypatch_module.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")  # one core per rank
    llm = start_engine(
        checkpoints(request.param),
        {"max_steps": MAX_STEPS},
        tensor_parallel_size=2,
        max_num_batched_tokens=32,
        enable_chunked_prefill=True,
    )
    assert llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size == 2
    yield request.param, llm
    stop_engine(llm)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_mixed_programs_at_tensor_parallel_2_match_reference(tp2_engine, references):
    family, llm = tp2_engine
    assert_mixed_batch_matches_reference(llm, references(family))

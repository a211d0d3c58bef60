"""The runner reuses a plan only where planning the step afresh gives the same plan."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from vllm_polar.config import PolarConfig
from vllm_polar.runtime.plan import build_plan
from vllm_polar.runtime.runner import Planner, token_histories

DEPTH, SLOTS = 6, 12
PROGRAMS = [(0, 1, 2, 3, 4, 5), (0, 1, 3, 4, 5), (0, 1, 2, 2, 3, 4, 5), (0, 1, 2, 3, 4, 5, 4, 5)]

rows = st.lists(
    st.tuples(st.sampled_from(range(len(PROGRAMS))), st.sampled_from([0, 1]), st.integers(4, 6)),
    min_size=1,
    max_size=6,
)  # (program, prompt, computed tokens) per row


def runner_for(batch_rows, tokens: np.ndarray, computed: np.ndarray, query_lens: np.ndarray):
    batch = SimpleNamespace(
        token_ids_cpu=tokens,
        num_computed_tokens_cpu=computed,
        num_prompt_tokens=np.full(len(batch_rows), 4),
        req_prompt_embeds={},
    )
    return SimpleNamespace(input_batch=batch, use_async_scheduling=False), np.concatenate(
        [[0], np.cumsum(query_lens)]
    )


def plan(programs, runner, qsl):
    histories = token_histories(runner, qsl)
    return build_plan(programs, qsl, torch.device("cpu"), DEPTH, SLOTS, histories)


def same(a, b) -> bool:
    return a.rounds == b.rounds and np.array_equal(a.host_index, b.host_index)


@given(rows, st.lists(st.integers(0, 2), min_size=6, max_size=6), st.sampled_from([1, 2]))
def test_a_plan_is_reused_only_when_the_step_plans_the_same(batch_rows, sampled, advance):
    """Rows of one prompt at one length share a history; each step appends a sampled token
    (drawn from three, so rows keep agreeing or part) and advances every row alike."""
    programs = [PROGRAMS[p] for p, _, _ in batch_rows]
    tokens = np.zeros((len(batch_rows), 32), np.int32)
    for row, (_, prompt, _) in enumerate(batch_rows):
        tokens[row, :16] = np.arange(16) + 100 * prompt
    computed = np.array([c for *_, c in batch_rows])
    query_lens = np.ones(len(batch_rows), np.int64)
    req_ids = [f"r{i}" for i in range(len(batch_rows))]
    runner, qsl = runner_for(batch_rows, tokens, computed, query_lens)
    first = plan(programs, runner, qsl)
    planner = Planner(PolarConfig(num_layers=DEPTH, max_steps=SLOTS), plan=first)
    planner.req_ids, planner.query_lens, planner.computed = req_ids, query_lens, computed
    planner.shares = any(g.copies is not None for r in first.rounds for g in r.groups)
    for row in range(len(batch_rows)):
        end = computed[row] + 1
        tokens[row, end : end + advance] = sampled[row]
    step = computed + advance
    runner, qsl = runner_for(batch_rows, tokens, step, query_lens)
    if planner.reusable(list(req_ids), query_lens, step):
        assert same(first, plan(programs, runner, qsl))


def test_a_plan_is_not_reused_for_other_requests_token_counts_or_uneven_advances():
    planner = Planner(PolarConfig(num_layers=DEPTH, max_steps=SLOTS))
    planner.plan = build_plan(PROGRAMS[:2], np.array([0, 1, 2]), torch.device("cpu"), DEPTH, SLOTS)
    planner.req_ids, planner.query_lens = ["a", "b"], np.array([1, 1])
    planner.computed = np.array([10, 20])
    assert planner.reusable(["a", "b"], np.array([1, 1]), np.array([11, 21]))
    assert not planner.reusable(["b", "a"], np.array([1, 1]), np.array([11, 21]))
    assert not planner.reusable(["a", "b"], np.array([1, 2]), np.array([11, 21]))
    assert not planner.reusable(["a", "b"], np.array([1, 1]), np.array([11, 22]))
    planner.shares = True
    assert not planner.reusable(["a", "b"], np.array([1, 1]), np.array([11, 21]))

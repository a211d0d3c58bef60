"""Which rows the runner lets share a program prefix: rows with equal token histories only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from vllm_polar.runtime.runner import token_histories

PROMPT = [5, 6, 7, 8, 9, 10]


def runner_with(rows, async_scheduling: bool = False, embeds: tuple[int, ...] = ()):
    """A runner stub.  ``rows``: (tokens so far including this step's, computed, scheduled,
    prompt length) per row of the persistent batch."""
    token_ids = np.zeros((len(rows), 32), dtype=np.int32)
    for row, (tokens, *_) in enumerate(rows):
        token_ids[row, : len(tokens)] = tokens
    batch = SimpleNamespace(
        token_ids_cpu=token_ids,
        num_computed_tokens_cpu=np.array([computed for _, computed, _, _ in rows]),
        num_prompt_tokens=np.array([prompt for *_, prompt in rows]),
        req_prompt_embeds=dict.fromkeys(embeds),
    )
    runner = SimpleNamespace(input_batch=batch, use_async_scheduling=async_scheduling)
    query_start_loc = np.cumsum([0, *(scheduled for _, _, scheduled, _ in rows)])
    return runner, query_start_loc


def test_rows_of_one_prompt_in_the_same_prefill_chunk_share_a_history():
    runner, qsl = runner_with(
        [(PROMPT, 0, 6, 6), (PROMPT, 0, 6, 6), ([5, 6, 7, 8, 9, 11], 0, 6, 6), (PROMPT, 2, 4, 6)]
    )
    histories = token_histories(runner, qsl)
    assert histories[0] is not None and histories[0] == histories[1]
    assert histories[2] not in (None, histories[0])  # one token differs
    assert histories[3] is None  # alone with 2 cached tokens


def test_the_same_tokens_from_another_computed_count_are_another_history():
    runner, qsl = runner_with(
        [(PROMPT, 0, 6, 6), (PROMPT, 0, 6, 6), (PROMPT, 3, 3, 6), (PROMPT, 3, 3, 6)]
    )
    histories = token_histories(runner, qsl)
    assert histories[0] == histories[1] != histories[2] == histories[3]


def test_decoding_rows_share_while_their_generated_tokens_agree():
    runner, qsl = runner_with(
        [([*PROMPT, 1, 2], 7, 1, 6), ([*PROMPT, 1, 2], 7, 1, 6), ([*PROMPT, 1, 3], 7, 1, 6)]
    )
    histories = token_histories(runner, qsl)
    assert histories[0] == histories[1] != histories[2]


def test_under_async_scheduling_only_prompt_rows_share():
    """The last sampled token is not on the host yet: decoding rows must not be compared."""
    rows = [([*PROMPT, 1], 6, 1, 6), ([*PROMPT, 1], 6, 1, 6), (PROMPT, 0, 6, 6), (PROMPT, 0, 6, 6)]
    histories = token_histories(*runner_with(rows, async_scheduling=True))
    assert histories[:2] == [None, None]
    assert histories[2] is not None and histories[2] == histories[3]


def test_rows_given_as_embeddings_share_nothing():
    runner, qsl = runner_with([(PROMPT, 0, 6, 6), (PROMPT, 0, 6, 6)], embeds=(1,))
    assert token_histories(runner, qsl) == [None, None]

"""V1 model-runner side: the routing plan of the batch about to run."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from vllm.v1.attention.backend import CommonAttentionMetadata

from vllm_polar.config import PolarConfig
from vllm_polar.runtime.plan import Call, Plan, build_plan
from vllm_polar.runtime.requests import program_of

CallAttention = tuple[object, torch.Tensor]
"""(attention metadata, (n,) KV slot mapping) of one call's requests alone."""


def plan_for_batch(runner, config: PolarConfig) -> Plan:
    """Plan for the runner's persistent batch, after ``_prepare_inputs`` and the attention
    metadata of this step.

    Token order is the persistent batch's ``req_ids`` order; ``query_start_loc`` holds each
    row's token range.  Both change between steps, so this runs every step.
    """
    batch = runner.input_batch
    num_reqs = batch.num_reqs
    programs = [
        program_of(runner.requests[req_id].sampling_params.extra_args, config.num_layers)
        for req_id in batch.req_ids[:num_reqs]
    ]
    query_start_loc = runner.query_start_loc.np[: num_reqs + 1]
    histories = token_histories(runner, query_start_loc)
    plan = build_plan(programs, query_start_loc, runner.device, histories)
    calls = plan.partial_calls()
    if not calls:
        return plan
    batch_metadata = whole_batch_metadata(runner)
    (attention_group,) = runner.attn_groups[0]  # every slot attention has the same spec
    builder = attention_group.get_metadata_builder()
    return dataclasses.replace(
        plan,
        call_attention={
            call.tokens.start: call_attention(builder, batch_metadata, plan, call) for call in calls
        },
    )


def token_histories(runner, query_start_loc: np.ndarray) -> list[tuple[int, bytes] | None]:
    """Per row, (computed token count, token ids up to the end of this step's tokens), where
    another row has the same computed and scheduled token counts (None elsewhere).

    Equal histories mean equal tokens at equal positions over equal context, which is what lets
    rows share a program prefix.  Under async scheduling the last sampled token is not on the
    host yet, so only rows still in their prompt take part there; rows given as embeddings never.
    """
    batch = runner.input_batch
    num_reqs = len(query_start_loc) - 1
    computed = batch.num_computed_tokens_cpu[:num_reqs]
    ends = computed + np.diff(query_start_loc)
    rows_at: dict[tuple[int, int], list[int]] = {}
    for row in range(num_reqs):
        if runner.use_async_scheduling and ends[row] > batch.num_prompt_tokens[row]:
            continue
        if row not in batch.req_prompt_embeds:
            rows_at.setdefault((int(computed[row]), int(ends[row])), []).append(row)
    histories: list[tuple[int, bytes] | None] = [None] * num_reqs
    for (start, end), rows in rows_at.items():
        if len(rows) > 1:
            for row in rows:
                histories[row] = (start, batch.token_ids_cpu[row, :end].tobytes())
    return histories


def whole_batch_metadata(runner) -> CommonAttentionMetadata:
    """The step's common attention metadata, from the same runner buffers the runner's own
    ``_build_attention_metadata`` reads (eager: no padding; one KV-cache group)."""
    batch = runner.input_batch
    num_reqs = batch.num_reqs
    query_start_loc = runner.query_start_loc.np[: num_reqs + 1]
    num_tokens = int(query_start_loc[-1])
    block_table = batch.block_table[0]
    seq_lens_cpu = runner.optimistic_seq_lens_cpu[:num_reqs]
    return CommonAttentionMetadata(
        query_start_loc=runner.query_start_loc.gpu[: num_reqs + 1],
        query_start_loc_cpu=runner.query_start_loc.cpu[: num_reqs + 1],
        seq_lens=runner.seq_lens[:num_reqs],
        seq_lens_cpu_upper_bound=seq_lens_cpu,
        num_reqs=num_reqs,
        num_actual_tokens=num_tokens,
        max_query_len=int(np.diff(query_start_loc).max()),
        max_seq_len=int(seq_lens_cpu.max()),
        block_table_tensor=block_table.get_device_tensor(num_reqs),
        slot_mapping=block_table.slot_mapping.gpu[:num_tokens],
        causal=True,
        is_prefilling=batch.num_computed_tokens_cpu_tensor[:num_reqs]
        < batch.num_prompt_tokens_cpu_tensor[:num_reqs],
        positions=runner.positions[:num_tokens],
    )


def call_attention(
    builder, batch: CommonAttentionMetadata, plan: Plan, call: Call
) -> CallAttention:
    """Attention metadata and slot mapping of ``call``'s requests, as if they were the batch."""
    rows = torch.from_numpy(plan.host_index[call.rows])
    starts = plan.host_index[call.starts]
    device_rows = plan.token_index[call.rows]
    tokens = plan.indices(call)
    seq_lens_cpu = batch.seq_lens_cpu_upper_bound[rows]
    metadata = CommonAttentionMetadata(
        query_start_loc=plan.token_index[call.starts].to(torch.int32),
        query_start_loc_cpu=torch.from_numpy(starts.astype(np.int32)),
        seq_lens=batch.seq_lens[device_rows],
        seq_lens_cpu_upper_bound=seq_lens_cpu,
        num_reqs=len(rows),
        num_actual_tokens=len(tokens),
        max_query_len=int(np.diff(starts).max()),
        max_seq_len=int(seq_lens_cpu.max()),
        block_table_tensor=batch.block_table_tensor[device_rows],
        slot_mapping=batch.slot_mapping[tokens],
        causal=True,
        is_prefilling=batch.is_prefilling[rows],
        positions=batch.positions[tokens],
    )
    return builder.build(0, metadata), metadata.slot_mapping

"""V1 model-runner side: the routing plan of the batch about to run.

The runner keeps one :class:`Planner`.  It plans a batch when its composition changes and
reuses the plan while the batch keeps its requests, their token counts and their histories'
relations (steady decode: every row one token further), and with it the inputs of the calls
over part of the batch: every step refills them in place from one gather per runner buffer (per
slot for the block table and slot mapping: every slot is a KV-cache group of its own, and a
call's requests may keep their K/V in different slots) and builds their attention metadata.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time

import numpy as np
import torch
from vllm.forward_context import set_forward_context
from vllm.v1.attention.backend import CommonAttentionMetadata

from vllm_polar.config import PolarConfig
from vllm_polar.program import Program
from vllm_polar.runtime.plan import Call, Costs, Plan, ProgramTable, build_plan
from vllm_polar.runtime.requests import program_of

logger = logging.getLogger("vllm.polar")

CallAttention = tuple[object, torch.Tensor]
"""(attention metadata, (n,) KV slot mapping) of one call's requests alone."""

CALIBRATION_TOKENS = 64
"""Tokens of the dummy decode batch on which a layer run is timed."""


@dataclasses.dataclass
class Planner:
    """Plans of one runner: the programs of its requests (and every program seen, tabulated),
    the costs, the last plan."""

    config: PolarConfig
    costs: Costs | None = None
    table: ProgramTable = dataclasses.field(init=False)
    programs: dict[str, Program] = dataclasses.field(default_factory=dict)
    req_ids: list[str] = dataclasses.field(default_factory=list)
    query_lens: np.ndarray | None = None
    computed: np.ndarray | None = None
    plan: Plan | None = None
    calls: CallInputs | None = None
    shares: bool = False
    slot_groups: dict[int, int] | None = None

    def __post_init__(self) -> None:
        self.table = ProgramTable(self.config.num_layers, self.config.max_steps)

    def reusable(self, req_ids: list[str], query_lens: np.ndarray, computed: np.ndarray) -> bool:
        """The last plan holds for this step: same requests in the same order with the same
        token counts, no shared prefixes last time, every row advanced by the same count (so
        rows that differed in history still do, and no two rows newly line up)."""
        if self.plan is None or self.shares or req_ids != self.req_ids:
            return False
        if not np.array_equal(query_lens, self.query_lens):
            return False
        advance = computed - self.computed
        return bool((advance == advance[0]).all())

    def program_list(self, runner, req_ids: list[str]) -> list[Program]:
        """Each row's program, parsed once per request while it stays in the batch."""
        known = self.programs
        self.programs = {
            req_id: known.get(req_id)
            or program_of(
                runner.requests[req_id].sampling_params.extra_args, self.config.num_layers
            )
            for req_id in req_ids
        }
        return list(self.programs.values())


def plan_for_batch(runner, config: PolarConfig) -> Plan:
    """Plan for the runner's persistent batch, after ``_prepare_inputs`` and the attention
    metadata of this step.  Token order is the persistent batch's ``req_ids`` order;
    ``query_start_loc`` holds each row's token range."""
    planner = getattr(runner, "polar_planner", None)
    if planner is None:
        planner = runner.polar_planner = Planner(config)
    if planner.costs is None:
        planner.costs = measure_costs(runner)
    batch = runner.input_batch
    num_reqs = batch.num_reqs
    req_ids = batch.req_ids[:num_reqs]
    query_start_loc = runner.query_start_loc.np[: num_reqs + 1]
    query_lens = np.diff(query_start_loc)
    computed = batch.num_computed_tokens_cpu[:num_reqs].copy()
    if not planner.reusable(req_ids, query_lens, computed):
        histories = token_histories(runner, query_start_loc)
        planner.plan = build_plan(
            planner.program_list(runner, req_ids),
            query_start_loc,
            runner.device,
            config.num_layers,
            config.max_steps,
            histories,
            planner.costs,
            planner.table,
        )
        planner.shares = any(g.copies is not None for r in planner.plan.rounds for g in r.groups)
        planner.req_ids, planner.query_lens = req_ids, query_lens
        planner.calls = None
        if planner.plan.partial_calls():
            if planner.slot_groups is None:
                planner.slot_groups = slot_groups(runner)
            planner.calls = call_inputs(runner, planner.plan, planner.slot_groups)
    planner.computed = computed
    if planner.calls is None:
        return planner.plan
    return with_call_attention(runner, planner.plan, planner.calls)


def token_histories(runner, query_start_loc: np.ndarray) -> list[tuple[int, bytes] | None]:
    """Per row, (computed token count, token ids up to the end of this step's tokens), where
    another row has the same computed and scheduled token counts (None elsewhere).

    Equal histories mean equal tokens at equal positions over equal context, which is what lets
    rows share a program prefix.  Under async scheduling the last sampled token is not on the
    host yet, so only rows still in their prompt take part there; rows given as embeddings never.
    """
    batch = runner.input_batch
    num_reqs = len(query_start_loc) - 1
    computed = batch.num_computed_tokens_cpu[:num_reqs].astype(np.int64)
    ends = computed + np.diff(query_start_loc)
    eligible = np.ones(num_reqs, bool)
    if runner.use_async_scheduling:
        eligible &= ends <= batch.num_prompt_tokens[:num_reqs]
    for row in batch.req_prompt_embeds:
        if row < num_reqs:
            eligible[row] = False
    key = np.where(eligible, computed * (1 << 32) + ends, -1 - np.arange(num_reqs))
    _, group, counts = np.unique(key, return_inverse=True, return_counts=True)
    histories: list[tuple[int, bytes] | None] = [None] * num_reqs
    for row in np.flatnonzero(counts[group] > 1).tolist():
        histories[row] = (int(computed[row]), batch.token_ids_cpu[row, : ends[row]].tobytes())
    return histories


def whole_batch_metadata(runner, group: int = 0) -> CommonAttentionMetadata:
    """The step's common attention metadata of KV-cache group ``group`` (one slot), from the
    same runner buffers the runner's own ``_build_attention_metadata`` reads (eager: no
    padding)."""
    batch = runner.input_batch
    num_reqs = batch.num_reqs
    query_start_loc = runner.query_start_loc.np[: num_reqs + 1]
    num_tokens = int(query_start_loc[-1])
    block_table = batch.block_table[group]
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


def slot_groups(runner) -> dict[int, int]:
    """The KV-cache group of each slot (every slot attention is a group of its own)."""
    groups = runner.kv_cache_config.kv_cache_groups
    return {group.kv_cache_spec.slot: index for index, group in enumerate(groups)}


def metadata_builder(runner, group: int):
    (attention_group,) = runner.attn_groups[group]
    return attention_group.get_metadata_builder()


@dataclasses.dataclass
class CallInputs:
    """The inputs of a plan's calls over part of the batch, kept while the runner keeps the
    plan.  Each call's :class:`CommonAttentionMetadata` holds views of the buffers here (its
    rows and tokens are a span of the plan's ``call_region``); a step refills the buffers in
    place, one gather per runner buffer (per slot for the block table and slot mapping: every
    row and token from its own slot's KV-cache group), then sets each call's longest sequence
    and builds the backend's metadata."""

    calls: list[Call]
    metadata: list[CommonAttentionMetadata]
    spans: np.ndarray
    """(calls, 2) each call's rows, as positions in the region's rows."""
    host_rows: torch.Tensor
    """(rows,) the region's batch rows, host; ``device_rows`` and ``device_tokens`` the same
    rows and the region's tokens, on the device."""
    device_rows: torch.Tensor
    device_tokens: torch.Tensor
    builders: dict[int, object]
    """The attention-metadata builder of each slot."""
    slot_runs: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    """Per slot present: (its KV-cache group, positions in the region and batch rows of the
    rows on it, the same of the tokens on it)."""
    seq_lens: torch.Tensor
    seq_lens_cpu: torch.Tensor
    is_prefilling: torch.Tensor
    positions: torch.Tensor
    block_table: torch.Tensor
    slot_mapping: torch.Tensor


def call_inputs(runner, plan: Plan, groups: dict[int, int]) -> CallInputs:
    """The buffers and per-call metadata of ``plan``'s calls over part of the batch (their
    contents are filled in by :func:`with_call_attention`)."""
    calls = plan.partial_calls()
    region = plan.call_region
    tokens, rows, starts = region.tokens, region.rows, region.starts
    index = plan.token_index
    whole = whole_batch_metadata(runner)
    device_rows, device_tokens = index[rows], index[tokens]
    query_start_loc = index[starts].to(torch.int32)
    query_start_loc_cpu = torch.from_numpy(plan.host_index[starts].astype(np.int32))
    spans = region.call_rows
    query_lens = np.diff(whole.query_start_loc_cpu.numpy())[plan.host_index[rows]]
    max_query_lens = span_max(query_lens, spans).tolist()
    num_rows, num_tokens = len(device_rows), len(device_tokens)
    seq_lens = whole.seq_lens.new_empty(num_rows)
    seq_lens_cpu = whole.seq_lens_cpu_upper_bound.new_empty(num_rows)
    is_prefilling = whole.is_prefilling.new_empty(num_rows)
    positions = whole.positions.new_empty(num_tokens)
    block_table = whole.block_table_tensor.new_empty(num_rows, whole.block_table_tensor.shape[1])
    slot_mapping = whole.slot_mapping.new_empty(num_tokens)
    metadata = []
    for call, (r0, r1), (q0, q1), max_query_len in zip(
        calls, spans.tolist(), region.call_starts.tolist(), max_query_lens, strict=True
    ):
        t = slice(call.tokens.start - tokens.start, call.tokens.stop - tokens.start)
        r, q = slice(r0, r1), slice(q0, q1)
        metadata.append(
            CommonAttentionMetadata(
                query_start_loc=query_start_loc[q],
                query_start_loc_cpu=query_start_loc_cpu[q],
                seq_lens=seq_lens[r],
                seq_lens_cpu_upper_bound=seq_lens_cpu[r],
                num_reqs=r.stop - r.start,
                num_actual_tokens=t.stop - t.start,
                max_query_len=max_query_len,
                max_seq_len=0,  # set every step
                block_table_tensor=block_table[r],
                slot_mapping=slot_mapping[t],
                causal=True,
                is_prefilling=is_prefilling[r],
                positions=positions[t],
            )
        )
    slot_runs = [
        (
            groups[slot],
            index[region.row_order][row_start:row_end],
            index[region.rows_by_slot][row_start:row_end],
            index[region.token_order][token_start:token_end],
            index[region.tokens_by_slot][token_start:token_end],
        )
        for slot, row_start, row_end, token_start, token_end in region.slot_runs.tolist()
    ]
    return CallInputs(
        calls,
        metadata,
        spans,
        torch.from_numpy(plan.host_index[rows]),
        device_rows,
        device_tokens,
        {slot: metadata_builder(runner, group) for slot, group in groups.items()},
        slot_runs,
        seq_lens,
        seq_lens_cpu,
        is_prefilling,
        positions,
        block_table,
        slot_mapping,
    )


def with_call_attention(runner, plan: Plan, inputs: CallInputs) -> Plan:
    """``plan`` with this step's attention metadata of each call over part of the batch:
    ``inputs``' buffers refilled from the runner's, then each call's backend ``build`` on the
    slot that runs it."""
    whole = whole_batch_metadata(runner)
    torch.index_select(whole.seq_lens, 0, inputs.device_rows, out=inputs.seq_lens)
    torch.index_select(whole.seq_lens_cpu_upper_bound, 0, inputs.host_rows, out=inputs.seq_lens_cpu)
    torch.index_select(whole.is_prefilling, 0, inputs.host_rows, out=inputs.is_prefilling)
    torch.index_select(whole.positions, 0, inputs.device_tokens, out=inputs.positions)
    tables = runner.input_batch.block_table
    for group, row_order, slot_rows, token_order, slot_tokens in inputs.slot_runs:
        table = tables[group]
        inputs.block_table.index_copy_(
            0, row_order, table.get_device_tensor(whole.num_reqs).index_select(0, slot_rows)
        )
        inputs.slot_mapping.index_copy_(
            0,
            token_order,
            table.slot_mapping.gpu[: whole.num_actual_tokens].index_select(0, slot_tokens),
        )
    max_seq_lens = span_max(inputs.seq_lens_cpu.numpy(), inputs.spans).tolist()
    attention = {}
    for call, metadata, max_seq_len in zip(
        inputs.calls, inputs.metadata, max_seq_lens, strict=True
    ):
        metadata.max_seq_len = max_seq_len
        attention[call.tokens.start] = (
            inputs.builders[call.slot].build(0, metadata),
            metadata.slot_mapping,
        )
    return dataclasses.replace(plan, call_attention=attention)


def span_max(values: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Max of ``values`` over each non-empty [start, stop) row of the (c, 2) ``spans``."""
    return np.maximum.reduceat(np.append(values, 0), spans.ravel())[::2]


def check_shared_pool(runner) -> None:
    """Raise unless every slot attention's KV cache is a view of the same memory with the same
    layout: a call over several slots runs one slot's attention on the others' pages."""
    from vllm_polar.models.executor import SlotAttention  # the executor imports this module

    layers = runner.compilation_config.static_forward_context.values()
    caches = [layer.kv_cache for layer in layers if isinstance(layer, SlotAttention)]
    layouts = {(c.data_ptr(), tuple(c.shape), c.stride(), c.dtype) for c in caches}
    if len(layouts) > 1:
        raise RuntimeError(
            "PoLar needs every slot's KV cache in one pool with one page layout (vLLM lays "
            f"KV-cache groups out from byte 0 of the same tensors); found {len(layouts)} layouts"
        )


def log_kv_pool(runner, config: PolarConfig) -> None:
    """Log the KV pool in pages, and the tokens it holds at the identity and at S steps
    (after checking that the slots share it: :func:`check_shared_pool`)."""
    check_shared_pool(runner)
    pages = runner.kv_cache_config.num_blocks - 1  # vLLM keeps one back as its null block
    block = runner.cache_config.block_size
    logger.info(
        "PoLar KV pool: %d pages of %d tokens, one per slot a request's program uses: "
        "%d tokens at the identity (%d steps), %d at %d distinct steps",
        pages,
        block,
        pages // config.num_layers * block,
        config.num_layers,
        pages // config.max_steps * block,
        config.max_steps,
    )


def measure_costs(runner) -> Costs:
    """Time a layer run, a call's launches and a metadata build on this runner's device, once.

    Under tensor parallelism rank 0's figures are used by every rank, so that all ranks choose
    the same plans (their collectives must match).
    """
    tokens = min(CALIBRATION_TOKENS, runner.max_num_reqs)
    with set_forward_context(None, runner.vllm_config, num_tokens=tokens):  # MoE layers read it
        layer_run = runner.get_model().polar_layer_seconds(tokens)
    probe = torch.zeros(CALIBRATION_TOKENS, 8, device=runner.device)
    index = torch.arange(CALIBRATION_TOKENS, device=runner.device)
    launch = timed(lambda: probe.index_select(0, index), repeat=20) / 20
    whole = whole_batch_metadata(runner)
    builder = metadata_builder(runner, 0)
    build = timed(lambda: builder.build(0, whole))
    costs = Costs(layer_run=layer_run, call=5 * launch, build=build)
    from vllm.distributed import get_tp_group

    if get_tp_group().world_size > 1:
        costs = get_tp_group().broadcast_object(costs, src=0)
    logger.info(
        "PoLar plan costs on %s: layer run %.0f us, attention call %.0f us, metadata build %.0f us",
        runner.device,
        costs.layer_run * 1e6,
        costs.call * 1e6,
        costs.build * 1e6,
    )
    return costs


def timed(work, repeat: int = 1) -> float:
    """Median seconds of ``repeat`` back-to-back runs of ``work`` over five trials (device
    work finished), after one untimed run."""
    work()
    trials = []
    for _ in range(5):
        synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            work()
        synchronize()
        trials.append(time.perf_counter() - start)
    return statistics.median(trials)


def synchronize() -> None:
    if torch.accelerator.is_available():
        torch.accelerator.synchronize()

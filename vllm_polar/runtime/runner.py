"""V1 model-runner side: the routing plan of the batch about to run.

The runner keeps one :class:`Planner`.  It plans a batch when its composition changes and
reuses the plan while the batch keeps its requests, their token counts and their histories'
relations (steady decode: every row one token further); only the attention metadata of the
calls over part of the batch is rebuilt every step, from one gather per runner buffer (per slot
for the block table and slot mapping: every slot is a KV-cache group of its own, and a call's
requests may keep their K/V in different slots).
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
from vllm_polar.runtime.plan import Costs, Plan, ProgramTable, build_plan
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
    planner.computed = computed
    if planner.slot_groups is None:
        planner.slot_groups = slot_groups(runner)
    return with_call_attention(runner, planner.plan, planner.slot_groups)


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


def with_call_attention(runner, plan: Plan, groups: dict[int, int]) -> Plan:
    """``plan`` with the attention metadata of each call over part of the batch.

    Every runner buffer is gathered once for all such calls (their rows and tokens lie in the
    plan's ``call_region``), the block table and slot mapping slot by slot, each row and token
    from its own slot's KV-cache group (:func:`slot_tables`); each call's metadata is views of
    those gathers, then the backend ``build`` of the slot that runs it.
    """
    calls = plan.partial_calls()
    if not calls:
        return plan
    whole = whole_batch_metadata(runner)
    region = plan.call_region
    tokens, rows, starts = region.tokens, region.rows, region.starts
    host_rows = torch.from_numpy(plan.host_index[rows])
    host_starts = plan.host_index[starts]
    device_rows = plan.token_index[rows]
    device_tokens = plan.token_index[tokens]
    seq_lens_cpu = whole.seq_lens_cpu_upper_bound[host_rows]
    seq_lens_host = seq_lens_cpu.numpy()
    query_start_loc = plan.token_index[starts].to(torch.int32)
    query_start_loc_cpu = torch.from_numpy(host_starts.astype(np.int32))
    seq_lens = whole.seq_lens[device_rows]
    is_prefilling = whole.is_prefilling[host_rows]
    positions = whole.positions[device_tokens]
    block_table, slot_mapping = slot_tables(runner, plan, groups, whole.num_actual_tokens)
    spans = np.array([(call.rows.start, call.rows.stop) for call in calls]) - rows.start
    query_lens = np.diff(whole.query_start_loc_cpu.numpy())[plan.host_index[rows]]
    max_query_lens = span_max(query_lens, spans).tolist()
    max_seq_lens = span_max(seq_lens_host, spans).tolist()
    builders = {slot: metadata_builder(runner, group) for slot, group in groups.items()}
    attention = {}
    for call, max_query_len, max_seq_len in zip(calls, max_query_lens, max_seq_lens, strict=True):
        t = slice(call.tokens.start - tokens.start, call.tokens.stop - tokens.start)
        r = slice(call.rows.start - rows.start, call.rows.stop - rows.start)
        s = slice(call.starts.start - starts.start, call.starts.stop - starts.start)
        metadata = CommonAttentionMetadata(
            query_start_loc=query_start_loc[s],
            query_start_loc_cpu=query_start_loc_cpu[s],
            seq_lens=seq_lens[r],
            seq_lens_cpu_upper_bound=seq_lens_cpu[r],
            num_reqs=r.stop - r.start,
            num_actual_tokens=t.stop - t.start,
            max_query_len=max_query_len,
            max_seq_len=max_seq_len,
            block_table_tensor=block_table[r],
            slot_mapping=slot_mapping[t],
            causal=True,
            is_prefilling=is_prefilling[r],
            positions=positions[t],
        )
        attention[call.tokens.start] = (
            builders[call.slot].build(0, metadata),
            metadata.slot_mapping,
        )
    return dataclasses.replace(plan, call_attention=attention)


def span_max(values: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Max of ``values`` over each non-empty [start, stop) row of the (c, 2) ``spans``."""
    return np.maximum.reduceat(np.append(values, 0), spans.ravel())[::2]


def slot_tables(
    runner, plan: Plan, groups: dict[int, int], num_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (rows, blocks) block table of the call region's rows and the (tokens,) slot mapping
    of its tokens, each row's and token's from its own slot's KV-cache group: per slot
    present, one gather from that group's buffers and one scatter into place."""
    region = plan.call_region
    index = plan.token_index
    tables = runner.input_batch.block_table
    num_reqs = runner.input_batch.num_reqs
    row_order, rows_by_slot = index[region.row_order], index[region.rows_by_slot]
    token_order, tokens_by_slot = index[region.token_order], index[region.tokens_by_slot]
    block_table = slot_mapping = None
    for slot, row_start, row_end, token_start, token_end in region.slot_runs.tolist():
        table = tables[groups[slot]]
        slot_rows = table.get_device_tensor(num_reqs).index_select(
            0, rows_by_slot[row_start:row_end]
        )
        slot_tokens = table.slot_mapping.gpu[:num_tokens].index_select(
            0, tokens_by_slot[token_start:token_end]
        )
        if block_table is None:
            block_table = slot_rows.new_empty(len(row_order), slot_rows.shape[1])
            slot_mapping = slot_tokens.new_empty(len(token_order))
        block_table.index_copy_(0, row_order[row_start:row_end], slot_rows)
        slot_mapping.index_copy_(0, token_order[token_start:token_end], slot_tokens)
    return block_table, slot_mapping


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

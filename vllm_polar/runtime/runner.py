"""V1 model-runner side: the routing plan of the batch about to run."""

from __future__ import annotations

from vllm_polar.config import PolarConfig
from vllm_polar.runtime.plan import Plan, build_plan
from vllm_polar.runtime.requests import program_of


def plan_for_batch(runner, config: PolarConfig) -> Plan:
    """Plan for the runner's persistent batch, after ``_prepare_inputs`` of this step.

    Token order is the persistent batch's ``req_ids`` order; ``query_start_loc`` holds each
    row's token range.  Both change between steps, so this runs every step.
    """
    batch = runner.input_batch
    num_reqs = batch.num_reqs
    programs = [
        program_of(runner.requests[req_id].sampling_params.extra_args, config.num_layers)
        for req_id in batch.req_ids[:num_reqs]
    ]
    return build_plan(programs, runner.query_start_loc.np[: num_reqs + 1], runner.device)

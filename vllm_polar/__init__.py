"""vllm-polar: programs of layers (skipped and repeated decoder layers) for vLLM."""

from __future__ import annotations

_registered = False


def __getattr__(name: str):
    # ``from vllm_polar import LLM`` without importing vLLM at plugin-registration time.
    if name == "LLM":
        from vllm_polar.entrypoints.llm import LLM

        return LLM
    raise AttributeError(name)


def register() -> None:
    """vLLM general-plugin entry point; runs once in every vLLM process.

    Registers the PoLar model variants (lazily, by name) and the front-end and engine-core patches.
    """
    global _registered
    if _registered:
        return
    from vllm import ModelRegistry

    from vllm_polar.models import POLAR_ARCHITECTURES
    from vllm_polar.patches import apply_engine_patches

    for target in POLAR_ARCHITECTURES.values():
        ModelRegistry.register_model(target.split(":")[1], target)
    apply_engine_patches()
    _registered = True

"""vllm-polar: programs of layers (skipped and repeated decoder layers) for vLLM."""

from __future__ import annotations

_registered = False


def register() -> None:
    """vLLM general-plugin entry point; runs once in every vLLM process.

    Registers the PoLar model variants (lazily, by name) and the front-end patches.
    """
    global _registered
    if _registered:
        return
    from vllm import ModelRegistry

    from vllm_polar.models import POLAR_ARCHITECTURES
    from vllm_polar.patches import apply_frontend_patches

    for target in POLAR_ARCHITECTURES.values():
        ModelRegistry.register_model(target.split(":")[1], target)
    apply_frontend_patches()
    _registered = True

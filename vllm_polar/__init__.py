"""vllm-polar: programs of layers (skipped and repeated decoder layers) for vLLM."""

from __future__ import annotations

_registered = False


def __getattr__(name: str):
    # ``from vllm_polar import LLM`` without importing vLLM at plugin-registration time.
    if name == "LLM":
        from vllm_polar.patches import check_vllm_version

        check_vllm_version()  # before any import that reads vLLM internals
        from vllm_polar.entrypoints.llm import LLM

        return LLM
    raise AttributeError(name)


def register() -> None:
    """vLLM general-plugin entry point; runs once in every vLLM process.

    On the supported vLLM, registers the PoLar model variants (lazily, by name) and the
    front-end and engine-core patches.  On another vLLM it patches nothing and warns: stock
    engines run as they would without the plugin, and an engine that asks for PoLar is refused
    with the supported version.
    """
    global _registered
    if _registered:
        return
    _registered = True
    from vllm_polar.patches import apply_engine_patches, refuse_polar_engines, vllm_supported

    if not vllm_supported():
        refuse_polar_engines()
        return
    from vllm import ModelRegistry

    from vllm_polar.models import POLAR_ARCHITECTURES

    for target in POLAR_ARCHITECTURES.values():
        ModelRegistry.register_model(target.split(":")[1], target)
    apply_engine_patches()

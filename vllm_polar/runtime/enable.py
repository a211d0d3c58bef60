"""Switch an engine configuration to PoLar, or refuse with the reason."""

from __future__ import annotations

import os

from vllm.config import VllmConfig
from vllm.logger import init_logger

from vllm_polar import config as polar_config
from vllm_polar.models import POLAR_ARCHITECTURES, polar_name

logger = init_logger("vllm.polar")


ATTENTION_BACKENDS = {
    "CPU_ATTN": "tested here",
    "FLASH_ATTN": "its metadata builder keeps no state between builds in eager mode",
    "TRITON_ATTN": "its metadata builder keeps no state between builds",
}
"""Attention backends PoLar runs on, and why each is safe: PoLar builds attention metadata for
parts of a batch (one build per partial call), so a backend whose builder keeps state between
``build()`` calls (FlashInfer re-plans its wrappers on every build) would have the whole-batch
metadata re-planned under it."""
KV_CACHE_DTYPES = ("auto", "float16", "bfloat16")


def wants_polar(additional_config: dict | None) -> bool:
    return bool(additional_config) and polar_config.KEY in additional_config


def unsupported_features(vllm_config: VllmConfig) -> list[str]:
    """Reasons this engine configuration cannot run programs of layers (empty when it can)."""
    parallel = vllm_config.parallel_config
    hf_config = vllm_config.model_config.hf_text_config
    reasons = []
    if parallel.pipeline_parallel_size > 1:
        reasons.append("pipeline parallelism > 1 (a program jumps between layers of any stage)")
    if parallel.decode_context_parallel_size > 1 or parallel.prefill_context_parallel_size > 1:
        reasons.append("context parallelism (tokens are routed per request)")
    if parallel.enable_dbo:
        reasons.append("dual-batch overlap (the per-token routing is not split into micro-batches)")
    if parallel.enable_expert_parallel:
        reasons.append("expert parallelism (ranks would see different token counts per layer)")
    if vllm_config.lora_config is not None:
        reasons.append("LoRA (its per-token mapping assumes full-batch linear calls)")
    if vllm_config.speculative_config is not None:
        reasons.append("speculative decoding (drafts assume the fixed layer order)")
    if vllm_config.kv_transfer_config is not None:
        reasons.append("KV connectors (they assume one KV layer per decoder layer)")
    layer_types = getattr(hf_config, "layer_types", None) or []
    if getattr(hf_config, "use_sliding_window", False) or "sliding_attention" in layer_types:
        reasons.append("sliding-window layers (a KV slot is shared by every layer)")
    if parallel.data_parallel_size > 1 and vllm_config.model_config.is_moe:
        reasons.append(
            "data parallelism > 1 with an MoE model (ranks with different programs would run "
            "different numbers of expert collectives and hang)"
        )
    cache_dtype = vllm_config.cache_config.cache_dtype
    if cache_dtype not in KV_CACHE_DTYPES:
        reasons.append(
            f"kv_cache_dtype={cache_dtype} (a KV slot serves many layers, so per-layer KV "
            f"scales cannot apply; use one of {', '.join(KV_CACHE_DTYPES)})"
        )
    backend = vllm_config.attention_config.backend
    if backend is not None and backend.name not in ATTENTION_BACKENDS:
        reasons.append(attention_backend_reason(backend.name))
    if os.environ.get("VLLM_USE_V2_MODEL_RUNNER", "").lower() in ("1", "true"):
        reasons.append("VLLM_USE_V2_MODEL_RUNNER=1 (PoLar serves on the V1 model runner)")
    return reasons


def attention_backend_reason(name: str) -> str:
    return (
        f"attention backend {name} (PoLar builds attention metadata for parts of a batch and "
        f"runs only on backends whose builders keep no state between builds: "
        f"{', '.join(ATTENTION_BACKENDS)})"
    )


def check_attention_backend(name: str) -> None:
    """Raise ValueError with the reason unless the worker's selected backend is supported."""
    if name not in ATTENTION_BACKENDS:
        raise ValueError("PoLar cannot run with " + attention_backend_reason(name))


def enable(vllm_config: VllmConfig) -> polar_config.PolarConfig | None:
    """Turn PoLar on for ``vllm_config`` when its ``additional_config`` asks for it.

    Checks the architecture and the engine features, resolves the slot count, switches
    ``hf_config.architectures`` to the PoLar variant and pins the V1 model runner.  Raises
    ValueError with the reason when the combination is unsupported.
    """
    model_config = vllm_config.model_config
    num_layers = model_config.hf_text_config.num_hidden_layers
    config = polar_config.resolve(vllm_config.additional_config, num_layers)
    if config is None:
        return None
    architecture = model_config.hf_config.architectures[0]
    if architecture not in POLAR_ARCHITECTURES:
        raise ValueError(
            f"PoLar does not support architecture {architecture}; supported: "
            f"{', '.join(POLAR_ARCHITECTURES)}"
        )
    reasons = unsupported_features(vllm_config)
    if reasons:
        raise ValueError("PoLar cannot run with " + "; ".join(reasons))
    model_config.hf_config.architectures = [polar_name(architecture)]
    # Routing is data-dependent: the slot loop must run eagerly (set before the config
    # was built by the engine-args hook; re-checked here for configs built directly).
    if not model_config.enforce_eager:
        raise ValueError("PoLar needs enforce_eager=True (set automatically from EngineArgs)")
    vllm_config.compilation_config.fast_moe_cold_start = False
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
    logger.info(
        "PoLar on: %s with %d layers, %d step slots; a request holds KV pages for the slots "
        "its program uses (the identity: as in stock vLLM)",
        architecture,
        num_layers,
        config.max_steps,
    )
    return config

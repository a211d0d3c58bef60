"""PoLar variants of the supported vLLM model families.

Each family file holds the two per-family functions (``qkv``, ``post``) and binds them to the
shared slot-loop executor in :mod:`vllm_polar.models.executor`.
"""

POLAR_ARCHITECTURES: dict[str, str] = {
    "LlamaForCausalLM": "vllm_polar.models.llama:PolarLlamaForCausalLM",
    "Qwen2ForCausalLM": "vllm_polar.models.qwen2:PolarQwen2ForCausalLM",
    "Qwen3ForCausalLM": "vllm_polar.models.qwen3:PolarQwen3ForCausalLM",
    "Qwen2MoeForCausalLM": "vllm_polar.models.qwen2_moe:PolarQwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM": "vllm_polar.models.qwen3_moe:PolarQwen3MoeForCausalLM",
}
"""Stock architecture -> ``module:Class`` of its PoLar variant (registered lazily)."""


def polar_name(architecture: str) -> str:
    """Registered name of the PoLar variant of a stock architecture."""
    return POLAR_ARCHITECTURES[architecture].split(":")[1]

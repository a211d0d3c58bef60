"""PoLar Qwen3-MoE: Qwen3 attention (q/k RMSNorm); ``post`` runs the sparse MoE block."""

from vllm.model_executor.models.qwen3_moe import Qwen3MoeForCausalLM

from vllm_polar.models.executor import PolarCausalLM, dense_post
from vllm_polar.models.qwen3 import qkv

post = dense_post


class PolarQwen3MoeForCausalLM(PolarCausalLM, Qwen3MoeForCausalLM):
    polar_qkv = staticmethod(qkv)
    polar_post = staticmethod(post)

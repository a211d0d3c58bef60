"""PoLar Qwen2-MoE: Llama-style attention (biased QKV, no qk-norm); ``post`` runs the MoE block
with its shared expert."""

from vllm.model_executor.models.qwen2_moe import Qwen2MoeForCausalLM

from vllm_polar.models.executor import PolarCausalLM, dense_post
from vllm_polar.models.llama import qkv

post = dense_post


class PolarQwen2MoeForCausalLM(PolarCausalLM, Qwen2MoeForCausalLM):
    polar_qkv = staticmethod(qkv)
    polar_post = staticmethod(post)

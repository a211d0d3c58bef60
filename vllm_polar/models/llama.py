"""PoLar Llama: QKV projection and rotary embedding, no qk-norm."""

import torch
from torch import nn
from vllm.model_executor.models.llama import LlamaForCausalLM

from vllm_polar.models.executor import PolarCausalLM, dense_post


def qkv(layer: nn.Module, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    attn = layer.self_attn
    q, k, v = attn.qkv_proj(x)[0].split([attn.q_size, attn.kv_size, attn.kv_size], dim=-1)
    q, k = attn.rotary_emb(positions, q, k)
    return q, k, v


post = dense_post


class PolarLlamaForCausalLM(PolarCausalLM, LlamaForCausalLM):
    polar_qkv = staticmethod(qkv)
    polar_post = staticmethod(post)

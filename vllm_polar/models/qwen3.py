"""PoLar Qwen3: QKV projection, per-head q/k RMSNorm, rotary embedding."""

import torch
from torch import nn
from vllm.model_executor.models.qwen3 import Qwen3ForCausalLM

from vllm_polar.models.executor import PolarCausalLM, dense_post


def qkv(layer: nn.Module, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    attn = layer.self_attn
    q, k, v = attn.qkv_proj(x)[0].split([attn.q_size, attn.kv_size, attn.kv_size], dim=-1)
    q = attn.q_norm(q.reshape(-1, attn.head_dim)).view(q.shape)
    k = attn.k_norm(k.reshape(-1, attn.head_dim)).view(k.shape)
    q, k = attn.rotary_emb(positions, q, k)
    return q, k, v


post = dense_post


class PolarQwen3ForCausalLM(PolarCausalLM, Qwen3ForCausalLM):
    polar_qkv = staticmethod(qkv)
    polar_post = staticmethod(post)

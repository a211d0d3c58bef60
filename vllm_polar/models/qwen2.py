"""PoLar Qwen2: biased QKV projection, optional per-head q/k RMSNorm, rotary embedding."""

import torch
from torch import nn
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM

from vllm_polar.models import llama, qwen3
from vllm_polar.models.executor import PolarCausalLM, dense_post


def qkv(layer: nn.Module, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if layer.self_attn.qk_norm:
        return qwen3.qkv(layer, x, positions)
    return llama.qkv(layer, x, positions)


post = dense_post


class PolarQwen2ForCausalLM(PolarCausalLM, Qwen2ForCausalLM):
    polar_qkv = staticmethod(qkv)
    polar_post = staticmethod(post)

"""The slot loop shared by every PoLar model family.

A PoLar model is the stock vLLM model (same modules, same weight loading) whose per-layer
attentions are replaced by S *slot* attentions: slot k holds the K/V written at step k of a
program, so a layer that runs twice writes two slots.  One forward runs, for each step k:

    group tokens by the layer their program runs at step k;
    per group: input norm, QKV (family-specific ``qkv``);
    ONE attention call on slot k over all tokens (tokens that finished get zero q/k/v);
    per group: output projection and MLP (family-specific ``post``).

The attention backend's metadata describes the whole batch, so slot attentions are always
called with q/k/v for every token, in batch order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.layers.attention import Attention

from vllm_polar import config as polar_config
from vllm_polar.program import identity
from vllm_polar.runtime.plan import Plan, uniform_plan

QKV = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
"""qkv(layer, x, positions) -> (q, k, v): x (n, hidden) is input-normed; q (n, heads*hd)."""
Post = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""post(layer, residual, attn_out) -> (hidden, residual): o_proj, norm, MLP; (n, hidden)."""


def dense_post(
    layer: nn.Module, residual: torch.Tensor, attn_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output projection, post-attention norm and MLP (dense or MoE) of a stock layer."""
    hidden, _ = layer.self_attn.o_proj(attn_out)
    hidden, residual = layer.post_attention_layernorm(hidden, residual)
    return layer.mlp(hidden), residual


def replace_layer_attentions(
    model: nn.Module, vllm_config: VllmConfig, num_slots: int, prefix: str
) -> nn.ModuleList:
    """Unregister the per-layer attentions of ``model.layers`` and build S slot attentions.

    The KV-cache manager allocates one KV layer per registered attention, so leaving the
    per-layer ones registered would pay D + S layers.  Slot names carry exactly one integer
    (``{prefix}.polar_slots.{k}``), which is how vLLM binds caches to layers.
    """
    forward_context = vllm_config.compilation_config.static_forward_context
    template = None
    for layer in model.layers:
        attention = layer.self_attn.attn
        if attention.sliding_window is not None:
            raise ValueError(f"PoLar cannot serve sliding-window layer {attention.layer_name}")
        forward_context.pop(attention.layer_name)
        template = attention
        del layer.self_attn.attn
    return nn.ModuleList(
        Attention(
            template.num_heads,
            template.head_size,
            template.impl.scale,
            num_kv_heads=template.num_kv_heads,
            cache_config=vllm_config.cache_config,
            quant_config=vllm_config.quant_config,
            prefix=f"{prefix}.polar_slots.{k}",
        )
        for k in range(num_slots)
    )


def run_program(
    layers: nn.ModuleList,
    slots: nn.ModuleList,
    plan: Plan,
    hidden: torch.Tensor,
    positions: torch.Tensor,
    qkv: QKV,
    post: Post,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the plan's steps; returns the (hidden, residual) pair, each (N, hidden_size).

    The residual stream is hidden + residual (the stock layers' fused add-norm form).  Split
    steps write groups back in place: ``hidden`` and ``residual`` are owned by this loop.
    """
    residual = torch.zeros_like(hidden)
    for step, groups in enumerate(plan.steps):
        if groups[0].tokens is None:
            layer = layers[groups[0].layer]
            x, residual = layer.input_layernorm(hidden, residual)
            out = slots[step](*qkv(layer, x, positions))
            hidden, residual = post(layer, residual, out)
            continue
        q, k, v, normed = None, None, None, []
        for group in groups:
            layer, index = layers[group.layer], plan.indices(group)
            x, group_residual = layer.input_layernorm(
                hidden.index_select(0, index), residual.index_select(0, index)
            )
            group_q, group_k, group_v = qkv(layer, x, positions.index_select(0, index))
            if q is None:
                num_tokens = hidden.shape[0]
                q = group_q.new_zeros(num_tokens, group_q.shape[1])
                k = group_k.new_zeros(num_tokens, group_k.shape[1])
                v = group_v.new_zeros(num_tokens, group_v.shape[1])
            q.index_copy_(0, index, group_q)
            k.index_copy_(0, index, group_k)
            v.index_copy_(0, index, group_v)
            normed.append(group_residual)
        out = slots[step](q, k, v)
        for group, group_residual in zip(groups, normed):
            layer, index = layers[group.layer], plan.indices(group)
            group_hidden, group_residual = post(layer, group_residual, out.index_select(0, index))
            hidden.index_copy_(0, index, group_hidden)
            residual.index_copy_(0, index, group_residual)
    return hidden, residual


class PolarCausalLM(nn.Module):
    """Mixin placed before a stock ``*ForCausalLM``: same modules and weights, slot loop forward.

    Subclasses set ``polar_qkv`` and ``polar_post`` (the family's two functions).  The stock
    ``*Model`` keeps its torch.compile decorator but is never called: the forward below walks
    its layers itself, eagerly (PoLar forces ``enforce_eager``).
    """

    is_polar_model = True
    polar_qkv: QKV
    polar_post: Post = staticmethod(dense_post)

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        config = polar_config.from_additional_config(vllm_config.additional_config)
        if config is None:
            raise ValueError(
                f"{type(self).__name__} is selected by PoLar itself: enable PoLar with "
                'additional_config={"polar": {...}} on the stock architecture instead'
            )
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        from vllm_polar.patches import apply_worker_patches

        apply_worker_patches()
        self.polar_config = config
        model_prefix = f"{prefix}.model" if prefix else "model"
        self.model.polar_slots = replace_layer_attentions(
            self.model, vllm_config, config.max_steps, model_prefix
        )

    def get_model_state_cls(self):
        raise RuntimeError(
            "PoLar serves on the V1 model runner; unset VLLM_USE_V2_MODEL_RUNNER (PoLar sets "
            "it to 0 when it is enabled through EngineArgs)"
        )

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: object = None,
        inputs_embeds: torch.Tensor | None = None,
        polar_plan: Plan | None = None,
    ) -> torch.Tensor:
        """(N,) token ids (or (N, hidden) embeddings) -> (N, hidden) final hidden states.

        Without a plan (profiling and warm-up runs) every token runs the identity program.
        """
        if inputs_embeds is not None:
            hidden = inputs_embeds.clone()
        else:
            hidden = self.model.embed_input_ids(input_ids)
        plan = polar_plan or uniform_plan(identity(self.polar_config.num_layers))
        hidden, residual = run_program(
            self.model.layers,
            self.model.polar_slots,
            plan,
            hidden,
            positions,
            type(self).polar_qkv,
            type(self).polar_post,
        )
        hidden, _ = self.model.norm(hidden, residual)
        return hidden

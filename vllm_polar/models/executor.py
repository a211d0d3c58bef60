"""The slot loop shared by every PoLar model family.

A PoLar model is the stock vLLM model (same modules, same weight loading) whose per-layer
attentions are replaced by S *slot* attentions: each step of a program keeps its K/V in a slot
of its own (:func:`vllm_polar.program.step_slots`), so a layer that runs twice writes two
slots.  One forward runs the plan's rounds
(``vllm_polar.runtime.plan``):

    per group of tokens running one layer: input norm, QKV (family-specific ``qkv``);
    the round's attention call, over the tokens of its requests, each on its step's slot;
    per group: output projection and MLP (family-specific ``post``).

A call over part of the batch (or over several slots) runs under attention metadata of its
requests alone (the plan's ``call_attention``), swapped into the forward context for that one
call.  Rows that share a program prefix over the same history compute its steps once: the
others copy the results (q/k/v before the attention call, hidden and residual after the MLP).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.forward_context import get_forward_context
from vllm.model_executor.layers.attention import Attention

from vllm_polar import config as polar_config
from vllm_polar.program import identity, step_slots
from vllm_polar.runtime.enable import check_attention_backend
from vllm_polar.runtime.kv import SlotSpec, slot_spec
from vllm_polar.runtime.plan import Group, Plan, Round, uniform_plan
from vllm_polar.runtime.runner import CallAttention, timed

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
    slots = nn.ModuleList(
        SlotAttention(
            k,
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
    check_attention_backend(slots[0].attn_backend.get_name())  # chosen here, in the worker
    return slots


class SlotAttention(Attention):
    """The attention of slot ``slot``: its KV cache is a group of its own (:mod:`kv`)."""

    def __init__(self, slot: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slot = slot

    def get_kv_cache_spec(self, vllm_config: VllmConfig) -> SlotSpec:
        return slot_spec(super().get_kv_cache_spec(vllm_config), self.slot)


@dataclasses.dataclass
class Forward:
    """One forward through the plan's rounds: the model's layers and slot attentions, the
    family's two functions, the (N,) positions (``expanded``: those of the plan's expanded
    tokens, gathered once) and the (N, hidden) hidden and residual streams, which rounds over
    part of the batch update in place."""

    layers: nn.ModuleList
    slots: nn.ModuleList
    plan: Plan
    qkv: QKV
    post: Post
    positions: torch.Tensor
    expanded: torch.Tensor | None
    hidden: torch.Tensor
    residual: torch.Tensor

    def group_positions(self, group: Group) -> torch.Tensor:
        """(n,) positions of a group's tokens: a view of the one gather where it can."""
        if group.tokens.stop <= self.plan.expanded_tokens:
            return self.expanded[group.tokens]
        return self.positions.index_select(0, self.plan.indices(group))


def run_program(
    layers: nn.ModuleList,
    slots: nn.ModuleList,
    plan: Plan,
    hidden: torch.Tensor,
    positions: torch.Tensor,
    qkv: QKV,
    post: Post,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the plan's rounds; returns the (hidden, residual) pair, each (N, hidden_size).

    The residual stream is hidden + residual (the stock layers' fused add-norm form).  Rounds
    over part of the batch write their tokens back in place: ``hidden`` and ``residual`` are
    owned by this loop.
    """
    expanded = None
    if plan.token_index is not None:
        expanded = positions.index_select(0, plan.token_index[: plan.expanded_tokens])
    forward = Forward(
        layers, slots, plan, qkv, post, positions, expanded, hidden, torch.zeros_like(hidden)
    )
    for round_ in plan.rounds:
        call = round_.call
        if round_.groups[0].tokens is None:
            run_whole_round(forward, round_)
        elif call.tokens is not None and all(g.copies is None for g in round_.groups):
            run_call_round(forward, round_)
        else:
            run_scattered_round(forward, round_)
    return forward.hidden, forward.residual


def run_whole_round(forward: Forward, round_: Round) -> None:
    """A round of one layer over the whole batch on one slot."""
    layer = forward.layers[round_.groups[0].layer]
    x, residual = layer.input_layernorm(forward.hidden, forward.residual)
    out = forward.slots[round_.call.slot](*forward.qkv(layer, x, forward.positions))
    forward.hidden, forward.residual = forward.post(layer, residual, out)


def run_call_round(forward: Forward, round_: Round) -> None:
    """A round over part of the batch without copies, without batch-sized q/k/v buffers.

    The groups compute the call's tokens, group after group (:class:`Plan`): the call's
    hidden and residual rows are gathered once, each group's q/k/v is computed on a run of
    them, and the joined q/k/v go to the one attention call, whose output each group's MLP
    takes a run of.
    """
    plan, call = forward.plan, round_.call
    index = plan.indices(call)
    hidden = forward.hidden.index_select(0, index)
    residual = forward.residual.index_select(0, index)
    positions = forward.expanded[call.tokens]
    parts, start = [], 0
    for group in round_.groups:
        end = start + group.tokens.stop - group.tokens.start
        layer = forward.layers[group.layer]
        x, group_residual = layer.input_layernorm(hidden[start:end], residual[start:end])
        parts.append((start, end, group_residual, forward.qkv(layer, x, positions[start:end])))
        start = end
    q, k, v = joined([part[3] for part in parts])
    out = attend(forward.slots[call.slot], plan.call_metadata(call), q, k, v)
    results = [
        forward.post(forward.layers[group.layer], group_residual, out[start:end])
        for group, (start, end, group_residual, _) in zip(round_.groups, parts, strict=True)
    ]
    new_hidden, new_residual = joined(results)
    forward.hidden.index_copy_(0, index, new_hidden)
    forward.residual.index_copy_(0, index, new_residual)


def joined(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Tuples of (n_i, ·) tensors joined position by position along their rows."""
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def run_scattered_round(forward: Forward, round_: Round) -> None:
    """A round whose groups copy results between rows that share a program prefix, or whose
    call is over the whole batch on one slot: q/k/v go through batch-sized buffers."""
    plan, hidden, residual = forward.plan, forward.hidden, forward.residual
    num_tokens = hidden.shape[0]
    q, k, v, normed = None, None, None, []
    for group in round_.groups:
        layer, index = forward.layers[group.layer], plan.indices(group)
        x, group_residual = layer.input_layernorm(
            hidden.index_select(0, index), residual.index_select(0, index)
        )
        group_q, group_k, group_v = forward.qkv(layer, x, forward.group_positions(group))
        if q is None:
            q = group_q.new_empty(num_tokens, group_q.shape[1])
            k = group_k.new_empty(num_tokens, group_k.shape[1])
            v = group_v.new_empty(num_tokens, group_v.shape[1])
        q.index_copy_(0, index, group_q)
        k.index_copy_(0, index, group_k)
        v.index_copy_(0, index, group_v)
        share(plan, group, q, k, v)
        normed.append(group_residual)
    call = round_.call
    if call.tokens is None:
        out = forward.slots[call.slot](q, k, v)
    else:
        index = plan.indices(call)
        out = torch.empty_like(q)
        call_q, call_k, call_v = (t.index_select(0, index) for t in (q, k, v))
        metadata = plan.call_metadata(call)
        out.index_copy_(
            0, index, attend(forward.slots[call.slot], metadata, call_q, call_k, call_v)
        )
    for group, group_residual in zip(round_.groups, normed, strict=True):
        layer, index = forward.layers[group.layer], plan.indices(group)
        group_hidden, group_residual = forward.post(
            layer, group_residual, out.index_select(0, index)
        )
        hidden.index_copy_(0, index, group_hidden)
        residual.index_copy_(0, index, group_residual)
        share(plan, group, hidden, residual)


def share(plan: Plan, group: Group, *tensors: torch.Tensor) -> None:
    """Give the group's copy targets the rows of their sources in each (N, ·) tensor."""
    if group.copies is None:
        return
    targets, sources = plan.copies(group)
    for tensor in tensors:
        tensor.index_copy_(0, targets, tensor.index_select(0, sources))


def attend(
    slot: Attention, attention: CallAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """Attention of one call's tokens through slot attention ``slot``: q/k/v (n, ·) ->
    (n, heads*hd).

    The slot attention reads its metadata and KV slot mapping from the forward context by
    layer name; for this call both describe the call's requests alone, each request's pages
    those of its own step's slot (all slots share one pool).
    """
    context = get_forward_context()
    name = slot.layer_name
    whole_batch = context.attn_metadata[name], context.slot_mapping[name]
    context.attn_metadata[name], context.slot_mapping[name] = attention
    try:
        return slot(q, k, v)
    finally:
        context.attn_metadata[name], context.slot_mapping[name] = whole_batch


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
        plan = polar_plan or self.identity_plan()
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

    def identity_plan(self) -> Plan:
        program = identity(self.polar_config.num_layers)
        return uniform_plan(program, step_slots(program, len(program), self.polar_config.max_steps))

    @torch.inference_mode()
    def polar_layer_seconds(self, num_tokens: int) -> float:
        """Median seconds of one layer run (layer 0's norms, QKV, output projection and MLP,
        no attention) on ``num_tokens`` dummy tokens: what a plan pays per layer it reads."""
        layer = self.model.layers[0]
        device = next(self.parameters()).device
        hidden = self.model.embed_input_ids(
            torch.zeros(num_tokens, dtype=torch.long, device=device)
        )
        positions = torch.zeros(num_tokens, dtype=torch.long, device=device)

        def run() -> None:
            x, residual = layer.input_layernorm(hidden, torch.zeros_like(hidden))
            q, _, _ = type(self).polar_qkv(layer, x, positions)
            type(self).polar_post(layer, residual, torch.zeros_like(q))

        return timed(run)

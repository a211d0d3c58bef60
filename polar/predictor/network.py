"""The PoLar prediction network (paper §3.2): token embeddings -> segment-form logits.

Frozen-encoder token embeddings are normalised and projected to ``d``; ``D`` learned layer
queries cross-attend to the tokens (padding masked); a small transformer encoder mixes the
``D`` layer positions; a boundary head gives ``D`` logits and an op head ``D x 3`` logits
(skip/keep/repeat). The encoder itself lives outside this module (see ``encoder.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from polar.predictor.segments import Op


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of the network; ``encoder_dim`` is the encoder's token-embedding size."""

    encoder_dim: int
    num_layers: int
    hidden_size: int = 256
    num_heads: int = 4
    num_blocks: int = 2
    dropout: float = 0.1

    def __post_init__(self):
        sizes = (self.encoder_dim, self.num_layers, self.hidden_size, self.num_heads)
        if min(sizes) < 1 or self.num_blocks < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"bad network shape {self}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )


def count_parameters(config: NetworkConfig) -> int:
    """Trainable parameters of :class:`PredictorNetwork` for ``config`` (closed form)."""
    e, layers, d = config.encoder_dim, config.num_layers, config.hidden_size
    attention = 4 * d * d + 4 * d  # q/k/v in-projection and out-projection, with biases
    feed_forward = 8 * d * d + 5 * d  # d -> 4d -> d, with biases
    block = attention + feed_forward + 4 * d  # + two LayerNorms
    return (
        2 * e  # input LayerNorm
        + e * d + d  # projection
        + layers * d  # layer queries
        + attention + 2 * d  # cross-attention + its LayerNorm
        + config.num_blocks * block
        + d + 1  # boundary head
        + d * len(Op) + len(Op)  # op head
    )  # fmt: skip


class PredictorNetwork(nn.Module):
    def __init__(self, config: NetworkConfig):
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.input_norm = nn.LayerNorm(config.encoder_dim)
        self.projection = nn.Linear(config.encoder_dim, d)
        self.layer_queries = nn.Parameter(torch.randn(config.num_layers, d) * 0.02)
        self.cross_attention = nn.MultiheadAttention(
            d, config.num_heads, dropout=config.dropout, batch_first=True
        )
        self.cross_norm = nn.LayerNorm(d)
        block = nn.TransformerEncoderLayer(
            d, config.num_heads, 4 * d, config.dropout, batch_first=True
        )
        self.layer_encoder = nn.TransformerEncoder(
            block, config.num_blocks, enable_nested_tensor=False
        )
        self.boundary_head = nn.Linear(d, 1)
        self.op_head = nn.Linear(d, len(Op))

    def forward(
        self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``token_embeddings [B, T, E]``, ``attention_mask [B, T]`` (True/1 = real token).

        Returns ``boundary_logits [B, D]`` and ``op_logits [B, D, 3]``.
        """
        tokens = token_embeddings.to(self.layer_queries.dtype)
        tokens = self.projection(self.input_norm(tokens))  # [B, T, d]
        queries = self.layer_queries.expand(tokens.shape[0], -1, -1)  # [B, D, d]
        attended, _ = self.cross_attention(
            queries, tokens, tokens, key_padding_mask=~attention_mask.bool(), need_weights=False
        )
        layers = self.layer_encoder(self.cross_norm(queries + attended))  # [B, D, d]
        return self.boundary_head(layers).squeeze(-1), self.op_head(layers)

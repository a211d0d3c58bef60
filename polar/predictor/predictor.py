"""The inference API: questions -> top-k programs (load one with ``checkpoint.load``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from sentence_transformers import SentenceTransformer

from polar.predictor.decoding import Candidate, decode_batch
from polar.predictor.encoder import encode_tokens, pad_tokens
from polar.predictor.network import PredictorNetwork

if TYPE_CHECKING:
    from polar.predictor.checkpoint import CheckpointConfig


class Predictor:
    """A trained network with its encoder; decodes at most ``max_steps`` executed steps
    (the checkpoint's step budget, or fewer when the engine has fewer slots)."""

    def __init__(
        self,
        network: PredictorNetwork,
        encoder: SentenceTransformer,
        config: CheckpointConfig,
        max_steps: int,
    ):
        self.network = network.eval()
        self.encoder = encoder
        self.config = config
        self.max_steps = max_steps

    @torch.inference_mode()
    def logits(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``boundary_logits [B, D]`` and ``op_logits [B, D, 3]`` for a batch of questions."""
        tokens, mask = pad_tokens(encode_tokens(self.encoder, questions))
        device = next(self.network.parameters()).device
        return self.network(tokens.to(device), mask.to(device))

    def predict(
        self,
        questions: list[str],
        k: int = 5,
        *,
        min_steps: int = 1,
        max_steps: int | None = None,
        length_penalty: float = 0.0,
        threshold: float = 0.5,
    ) -> list[list[Candidate]]:
        """Top-``k`` distinct programs per question, best first (fewer when fewer fit the
        step budget ``[min_steps, max_steps]``; ``max_steps`` defaults to ``self.max_steps``)."""
        max_steps = self.max_steps if max_steps is None else max_steps
        if max_steps > self.max_steps:
            raise ValueError(
                f"max_steps {max_steps} is above the predictor's step budget {self.max_steps} "
                "(the serving slot count)"
            )
        boundary_logits, op_logits = self.logits(questions)
        return decode_batch(
            boundary_logits,
            op_logits,
            k,
            threshold=threshold,
            min_steps=min_steps,
            max_steps=max_steps,
            length_penalty=length_penalty,
        )

"""Independent reference: plain transformers, layers run in program order, no KV cache.

Every generated token recomputes the whole sequence, so step k's attention at position t sees
exactly what layer program[k] produced for positions <= t: F_pi applied to the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM


class Reference:
    def __init__(self, path: str) -> None:
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()

    @torch.no_grad()
    def logits(self, token_ids: Sequence[int], program: Sequence[int]) -> torch.Tensor:
        """(T, vocab) next-token logits of the sequence under ``program``."""
        inner = self.model.model
        ids = torch.tensor([list(token_ids)])
        positions = torch.arange(ids.shape[1])[None]
        hidden = inner.embed_tokens(ids)
        rotary = inner.rotary_emb(hidden, positions)
        for layer in program:
            out = inner.layers[layer](
                hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary
            )
            hidden = out[0] if isinstance(out, tuple) else out
        return self.model.lm_head(inner.norm(hidden))[0]

    def greedy(
        self, prompt: Sequence[int], program: Sequence[int], max_tokens: int
    ) -> tuple[list[int], list[float]]:
        """Greedy tokens and their log-probabilities."""
        tokens: list[int] = []
        logprobs: list[float] = []
        for _ in range(max_tokens):
            last = torch.log_softmax(self.logits([*prompt, *tokens], program)[-1], dim=-1)
            token = int(last.argmax())
            tokens.append(token)
            logprobs.append(float(last[token]))
        return tokens, logprobs

"""Stop a direct answer once it is decided: right after its first closed ``\\boxed{…}``.

Direct answers reach their box in a few tokens, while a program that wanders runs to the token
limit; stopping at the box saves those tokens without changing what is graded. vLLM's stop
strings cannot match a closing brace at nesting depth 0 (``\\boxed{\\frac{3}{4}}``), so this is a
vLLM logits processor: a request whose ``extra_args`` hold ``{"stop_after_boxed": True}``
gets its end-of-sequence token forced at the first step after its text holds a closed box.
Everything generated before is exactly what decoding without the processor generates.

Engines take it with ``logits_processors=[BoxedAnswerStop]``; requests without the flag are
left alone. A completion stopped this way is graded on its first box (``polar.answers`` reads
the last box of the text, which is then the first).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from vllm import SamplingParams
from vllm.config import VllmConfig
from vllm.tokenizers.registry import cached_tokenizer_from_config
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from polar.answers import extract_boxed

STOP_AFTER_BOXED = "stop_after_boxed"
"""``SamplingParams.extra_args`` key that turns the stop on for a request."""


class BoxWatch:
    """One request's state: the text generated so far and whether its box has closed."""

    def __init__(self, piece: Callable[[int], str], eos_token_id: int) -> None:
        self.piece = piece
        self.eos_token_id = eos_token_id
        self.text = ""
        self.seen = 0
        self.closed = False

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        """``logits [V]`` of the next token, all but EOS masked once the box has closed."""
        if not self.closed and len(output_ids) > self.seen:
            new = "".join(self.piece(token) for token in output_ids[self.seen :])
            self.seen = len(output_ids)
            self.text += new
            self.closed = "}" in new and extract_boxed(self.text) is not None
        if not self.closed:
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[self.eos_token_id] = 0.0
        return forced


class BoxedAnswerStop(AdapterLogitsProcessor):
    """vLLM logits processor behind ``stop_after_boxed`` (module docstring)."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        tokenizer = cached_tokenizer_from_config(vllm_config.model_config)
        self.eos_token_id = tokenizer.eos_token_id
        self.piece = lru_cache(maxsize=None)(lambda token: tokenizer.decode([token]))

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: SamplingParams) -> BoxWatch | None:
        if not (params.extra_args or {}).get(STOP_AFTER_BOXED):
            return None
        return BoxWatch(self.piece, self.eos_token_id)

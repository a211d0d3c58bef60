"""The boxed-answer stop, token by token, with the real Qwen2.5-Coder tokenizer."""

from __future__ import annotations

import pytest
import torch

from polar.answers import extract_boxed
from polar.stopping import BoxWatch


@pytest.fixture(scope="module")
def tokenizer(qwen_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_path)


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{61}<|im_end|>",
        "The answer is \\boxed{\\frac{3}{4}} because",
        "\\boxed{12 \\text{ apples}} and then \\boxed{13}",
        "{x} first, \\boxed{1{,}000} then more",
    ],
)
def test_eos_is_forced_right_after_the_first_closed_box(tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    eos = tokenizer.eos_token_id
    watch = BoxWatch(lambda token: tokenizer.decode([token]), eos)
    vocab = len(tokenizer)
    output: list[int] = []
    forced_at = None
    for i, token in enumerate(ids):
        logits = watch(output, torch.zeros(vocab))
        if torch.isinf(logits).any():
            assert logits.argmax().item() == eos and torch.isinf(logits).sum() == vocab - 1
            forced_at = i
            break
        output.append(token)
    assert forced_at is not None
    generated = tokenizer.decode(output)
    assert extract_boxed(generated) is not None  # the box is closed
    assert extract_boxed(tokenizer.decode(output[:-1])) is None  # and closed by the last token
    assert text.startswith(generated)


def test_text_without_a_box_is_never_stopped(tokenizer) -> None:
    ids = tokenizer.encode("So {12} and {13}, no box at all here.", add_special_tokens=False)
    watch = BoxWatch(lambda token: tokenizer.decode([token]), tokenizer.eos_token_id)
    for i in range(len(ids) + 1):
        logits = torch.zeros(8 + max(ids))
        assert watch(ids[:i], logits) is logits

"""Tiny random checkpoints of the five supported families, built offline from configs."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2MoeConfig,
    Qwen3Config,
    Qwen3MoeConfig,
)

NUM_LAYERS = 6

_COMMON = dict(
    hidden_size=128,
    intermediate_size=128,
    num_hidden_layers=NUM_LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    initializer_range=0.1,
    tie_word_embeddings=False,
    bos_token_id=0,
    eos_token_id=1,
)
_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, norm_topk_prob=True)

FAMILIES = {
    "llama": lambda vocab: LlamaConfig(vocab_size=vocab, **_COMMON),
    "qwen2": lambda vocab: Qwen2Config(vocab_size=vocab, **_COMMON),
    "qwen3": lambda vocab: Qwen3Config(vocab_size=vocab, head_dim=32, **_COMMON),
    "qwen2_moe": lambda vocab: Qwen2MoeConfig(
        vocab_size=vocab, shared_expert_intermediate_size=64, **_MOE, **_COMMON
    ),
    "qwen3_moe": lambda vocab: Qwen3MoeConfig(vocab_size=vocab, head_dim=32, **_MOE, **_COMMON),
}

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Programs of layers skip or repeat decoder layers per request.",
    "A frozen language model answers arithmetic word problems step by step.",
    "Paged attention keeps the key value cache in fixed size blocks.",
] * 20


def build_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")


def build_checkpoint(family: str, out: Path) -> Path:
    """Write a seeded random float32 checkpoint of ``family`` (with tokenizer) to ``out``."""
    tokenizer = build_tokenizer()
    config = FAMILIES[family](len(tokenizer))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

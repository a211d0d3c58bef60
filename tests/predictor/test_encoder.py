"""The frozen encoder: token embeddings without padding, padding into a batch, disk cache."""

import pytest
import torch

from polar.predictor.encoder import (
    TokenEmbeddingCache,
    encode_tokens,
    load_encoder,
    pad_tokens,
)

TEXTS = [
    "How many?",
    "A considerably longer question about many apples, trains and coins in a box?",
    "A question of middle length?",
]


@pytest.fixture(scope="module")
def encoder(encoder_path):
    return load_encoder(encoder_path)


def test_batch_gives_each_text_its_own_tokens(encoder):
    batch = encode_tokens(encoder, TEXTS)
    for text, tokens in zip(TEXTS, batch):
        alone = encode_tokens(encoder, [text])[0]
        assert tokens.shape == alone.shape and tokens.shape[-1] == 384
        torch.testing.assert_close(tokens, alone, atol=1e-4, rtol=1e-4)


def test_left_padding_is_removed_too(encoder):
    lengths = [len(t) for t in encode_tokens(encoder, TEXTS)]
    side = encoder.tokenizer.padding_side
    encoder.tokenizer.padding_side = "left"
    try:
        assert [len(t) for t in encode_tokens(encoder, TEXTS)] == lengths
    finally:
        encoder.tokenizer.padding_side = side


def test_empty_question_is_an_error(encoder):
    with pytest.raises(ValueError, match="empty question"):
        encode_tokens(encoder, ["ok?", "  "])


def test_pad_tokens():
    tokens, mask = pad_tokens([torch.ones(2, 3), torch.ones(4, 3)])
    assert tokens.shape == (2, 4, 3)
    assert mask.tolist() == [[True, True, False, False], [True] * 4]
    assert tokens[0, 2:].abs().sum() == 0


def test_embedding_cache_encodes_each_text_once(tmp_path, encoder_path):
    loads = []

    def counting_load(name):
        loads.append(name)
        return load_encoder(name)

    texts = ["How many apples?", "How many trains?", "How many apples?"]
    first = TokenEmbeddingCache(tmp_path, encoder_path, counting_load).get(texts)
    assert len(loads) == 1
    assert [t.dtype for t in first] == [torch.float16] * 3
    assert first[0].shape[-1] == 384 and torch.equal(first[0], first[2])

    def failing_load(name):
        raise AssertionError("encoder loaded although every text is cached")

    again = TokenEmbeddingCache(tmp_path, encoder_path, failing_load).get(texts[:2])
    assert all(torch.equal(a, b) for a, b in zip(again, first))
    TokenEmbeddingCache(tmp_path, encoder_path, counting_load).get(["A new question?"])
    assert len(loads) == 2

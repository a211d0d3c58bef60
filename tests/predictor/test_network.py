"""The predictor network: parameter count and shapes, padding masked."""

import pytest
import torch

from polar.predictor.network import NetworkConfig, PredictorNetwork, count_parameters


def trainable(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig(encoder_dim=1024, num_layers=36),  # Qwen3-Embedding-0.6B, Qwen3-8B
        NetworkConfig(encoder_dim=384, num_layers=30),  # MiniLM, SmolLM2-135M
        NetworkConfig(encoder_dim=384, num_layers=24),  # MiniLM, Qwen2.5-0.5B
        NetworkConfig(encoder_dim=384, num_layers=8, hidden_size=64, num_heads=2, num_blocks=1),
        NetworkConfig(encoder_dim=16, num_layers=3, hidden_size=32, num_blocks=3),
    ],
)
def test_parameter_count_formula_matches_module(config):
    assert count_parameters(config) == trainable(PredictorNetwork(config))


def test_paper_config_has_about_2_1_million_parameters():
    count = count_parameters(NetworkConfig(encoder_dim=1024, num_layers=36))
    assert count == 2_117_892
    assert 2.05e6 < count < 2.15e6


def test_shapes_and_padding_is_masked():
    torch.manual_seed(0)
    network = PredictorNetwork(NetworkConfig(encoder_dim=12, num_layers=5, hidden_size=16)).eval()
    tokens = torch.randn(2, 4, 12)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    boundary_logits, op_logits = network(tokens, mask)
    assert boundary_logits.shape == (2, 5)
    assert op_logits.shape == (2, 5, 3)
    # what sits in padded positions does not matter
    garbage = tokens.clone()
    garbage[1, 2:] = 100.0
    boundary_again, op_again = network(garbage, mask)
    torch.testing.assert_close(boundary_again, boundary_logits)
    torch.testing.assert_close(op_again, op_logits)
    # a row alone gives the same logits as inside a padded batch
    alone_boundary, alone_ops = network(tokens[1:, :2], mask[1:, :2])
    torch.testing.assert_close(alone_boundary, boundary_logits[1:])
    torch.testing.assert_close(alone_ops, op_logits[1:])

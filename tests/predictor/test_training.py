"""Training: loss, schedule, learning the synthetic set, determinism, grid selection."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import polar.predictor.encoder as encoder_module
from polar.cli import main
from polar.predictor.checkpoint import load
from polar.predictor.fit import fit
from polar.predictor.labels import write_supervision
from polar.predictor.segments import Op
from polar.predictor.training import (
    WARMUP_STEPS,
    Hyperparameters,
    segment_loss,
    split_indices,
    warmup_cosine,
)
from polar.prompts import predictor_input
from tests.predictor.synthetic import (
    HELD_OUT_NAMES,
    SYNTHETIC_DEPTH,
    SYNTHETIC_TRAINING,
    TRAIN_NAMES,
    synthetic_rows,
)


def test_warmup_then_cosine():
    factor = warmup_cosine(total_steps=110)
    assert factor(0) == pytest.approx(1 / WARMUP_STEPS)
    assert factor(WARMUP_STEPS - 1) == pytest.approx(1.0)
    assert factor(WARMUP_STEPS) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)
    assert factor(110) == pytest.approx(0.0)
    values = [factor(step) for step in range(WARMUP_STEPS, 111)]
    assert values == sorted(values, reverse=True)


def test_loss_is_bce_plus_ce_at_segment_starts_only():
    boundary_targets = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    op_targets = torch.zeros(1, 4, 3)
    op_targets[0, 0, Op.KEEP] = 1.0
    op_targets[0, 2, Op.REPEAT] = 1.0
    boundary_logits = torch.zeros(1, 4)
    op_logits = torch.zeros(1, 4, 3, requires_grad=True)
    loss = segment_loss(boundary_logits, op_logits, boundary_targets, op_targets)
    assert loss.item() == pytest.approx(math.log(2) + math.log(3))
    loss.backward()
    assert op_logits.grad[0, [1, 3]].abs().sum() == 0  # no op loss inside segments
    confident = segment_loss(
        (boundary_targets * 2 - 1) * 30, (op_targets * 2 - 1) * 30, boundary_targets, op_targets
    )
    assert confident.item() < 1e-6


def test_split_is_seeded_and_disjoint():
    train, val = split_indices(50, 0.1, seed=3)
    assert (train, val) == split_indices(50, 0.1, seed=3)
    assert len(val) == 5 and sorted(train + val) == list(range(50))
    assert split_indices(50, 0.1, seed=4) != (train, val)


def top1_accuracy(predictor, rows) -> float:
    """Top-1 on the text the predictor was trained to read (no base model: the bare prompt)."""
    predictions = predictor.predict([predictor_input(row.question) for row in rows], k=1)
    hits = [c[0].program == row.valid_programs[0] for c, row in zip(predictions, rows)]
    return sum(hits) / len(rows)


def test_learns_programs_that_are_a_function_of_the_question(
    trained_checkpoint, synthetic_train, synthetic_held_out
):
    predictor = load(trained_checkpoint, expected_num_layers=SYNTHETIC_DEPTH)
    assert top1_accuracy(predictor, synthetic_train[1]) >= 0.95
    held_out_questions = {row.question for row in synthetic_held_out}
    assert not held_out_questions & {row.question for row in synthetic_train[1]}
    assert top1_accuracy(predictor, synthetic_held_out) >= 0.95
    config = json.loads((trained_checkpoint / "config.json").read_text())
    assert config["max_steps"] == config["max_steps_observed"] == 12
    assert config["training"]["labels"]["questions_with_labels"] == 6 * 16


def test_training_is_deterministic(tmp_path, synthetic_train, encoder_path, embedding_cache):
    grid = [Hyperparameters(lr=3e-3, batch_size=16, epochs=2)]

    def weights(seed, name):
        out = tmp_path / name
        config = fit(
            synthetic_train[0],
            encoder_path,
            SYNTHETIC_DEPTH,
            out,
            grid=grid,
            seed=seed,
            hidden_size=32,
            cache_dir=embedding_cache,
        )
        return load_file(out / "model.safetensors"), config

    first, first_config = weights(7, "a")
    second, second_config = weights(7, "b")
    other, _ = weights(8, "c")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert first_config == second_config
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_grid_selects_on_validation_without_re_encoding(
    tmp_path, monkeypatch, trained_checkpoint, synthetic_train, encoder_path, embedding_cache
):
    # trained_checkpoint has filled the cache; any encoder call now fails the test
    def no_encoding(*args, **kwargs):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(encoder_module, "encode_tokens", no_encoding)
    grid = [Hyperparameters(lr=1e-4, batch_size=32, epochs=1), SYNTHETIC_TRAINING["grid"][0]]
    config = fit(
        synthetic_train[0],
        encoder_path,
        SYNTHETIC_DEPTH,
        tmp_path / "ckpt",
        grid=grid,
        hidden_size=SYNTHETIC_TRAINING["hidden_size"],
        cache_dir=embedding_cache,
    )
    runs = config.training["grid"]
    assert [(r["lr"], r["batch_size"], r["epochs"]) for r in runs] == [
        (h.lr, h.batch_size, h.epochs) for h in grid
    ]
    best = max(runs, key=lambda r: (r["top1"], -r["loss"]))
    assert config.training["selected"] == best
    assert best["lr"] == 3e-3  # one epoch at lr 1e-4 cannot learn the topics


def test_defaults_converge_on_a_few_hundred_questions(tmp_path, encoder_path, embedding_cache):
    """240 questions (40 per topic) with the default hyper-parameters: enough steps whatever
    the data size, then early stopping; unseen questions of the same kinds get their topic's
    program."""
    rows = synthetic_rows(per_topic=40, names=TRAIN_NAMES, seed=3)
    write_supervision(rows, tmp_path / "data.jsonl")
    config = fit(
        tmp_path / "data.jsonl",
        encoder_path,
        SYNTHETIC_DEPTH,
        tmp_path / "ckpt",
        hidden_size=64,
        cache_dir=embedding_cache,
    )
    selected = config.training["selected"]
    assert selected["epochs"] is None  # the default: epochs from the data size
    assert selected["steps"] >= selected["best_epoch"] * math.ceil(216 / 32)
    assert selected["epochs_run"] - selected["best_epoch"] <= selected["patience"]
    assert config.training["beats_majority"]
    predictor = load(tmp_path / "ckpt", expected_num_layers=SYNTHETIC_DEPTH)
    held_out = synthetic_rows(per_topic=5, names=HELD_OUT_NAMES, seed=11)
    assert top1_accuracy(predictor, held_out) >= 0.95


def test_train_warns_when_the_predictor_is_no_better_than_the_most_common_program(
    tmp_path, encoder_path, embedding_cache, capsys
):
    rows = synthetic_rows(per_topic=8, names=TRAIN_NAMES, seed=4)
    for row in rows:
        row.valid_programs = [tuple(range(SYNTHETIC_DEPTH))]  # every question: the identity
    write_supervision(rows, tmp_path / "data.jsonl")
    argv = ["train", "--data", str(tmp_path / "data.jsonl"), "--encoder", encoder_path]
    argv += ["--num-layers", str(SYNTHETIC_DEPTH), "--out", str(tmp_path / "ckpt")]
    argv += ["--hidden-size", "32", "--epochs", "3", "--cache-dir", str(embedding_cache)]
    assert main(argv) == 0
    assert "no better than always answering the most common program (1.000)" in (
        capsys.readouterr().err
    )
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["training"]["majority_baseline"]["program"] == list(range(SYNTHETIC_DEPTH))
    assert not config["training"]["beats_majority"]

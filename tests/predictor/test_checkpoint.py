"""Checkpoints: round trip, every mismatch error, the Python API and the CLI."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from polar.cli import main
from polar.predictor.checkpoint import CheckpointConfig, CheckpointError, load, save
from polar.predictor.decoding import decode_batch
from polar.predictor.encoder import encode_tokens, pad_tokens
from polar.predictor.network import NetworkConfig, PredictorNetwork, count_parameters
from tests.predictor.synthetic import SYNTHETIC_DEPTH, TOPIC_PROGRAMS
from tests.runtime.tiny import build_tokenizer
from vllm_polar.program import format_program

QUESTION = "Ben has 3 trains. A friend gives Ben 4 more trains. How many trains now?"


@pytest.fixture
def small_checkpoint(tmp_path, encoder_path):
    """An untrained checkpoint for depth 6 with the MiniLM encoder (384-d)."""
    torch.manual_seed(0)
    network_config = NetworkConfig(encoder_dim=384, num_layers=6, hidden_size=32)
    network = PredictorNetwork(network_config)
    config = CheckpointConfig(
        encoder=encoder_path,
        network=network_config,
        base_model="tiny-6",
        max_steps=9,
        max_steps_observed=9,
        training={"questions": 0},
    )
    save(tmp_path / "ckpt", network, config)
    return tmp_path / "ckpt", network


def edit_config(directory, **changes):
    path = directory / "config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_round_trip(small_checkpoint, encoder_path):
    directory, network = small_checkpoint
    predictor = load(directory, expected_num_layers=6)
    for name, tensor in network.state_dict().items():
        assert torch.equal(predictor.network.state_dict()[name], tensor)
    config = json.loads((directory / "config.json").read_text())
    assert config["num_parameters"] == count_parameters(network.config)
    assert (config["base_model"], config["max_steps"], config["k_max"]) == ("tiny-6", 9, 4)
    questions = ["How many apples?", "A longer question about seven trains and a box?"]
    tokens, mask = pad_tokens(encode_tokens(predictor.encoder, questions))
    with torch.no_grad():
        want = decode_batch(*network.eval()(tokens, mask), k=5, max_steps=9)
    got = predictor.predict(questions, k=5)
    assert [[c.program for c in row] for row in got] == [[c.program for c in row] for row in want]
    for row_got, row_want in zip(got, want):
        assert [c.score for c in row_got] == pytest.approx([c.score for c in row_want], abs=1e-4)
        assert len(row_got) == 5
        assert all(1 <= len(c.program) <= 9 for c in row_got)
    # a micro-batch gives what one request at a time gives
    one_by_one = [predictor.predict([q], k=5)[0] for q in questions]
    assert [[c.program for c in row] for row in one_by_one] == [
        [c.program for c in row] for row in got
    ]


def test_step_budget_and_slots(small_checkpoint):
    directory, _ = small_checkpoint
    predictor = load(directory)
    with pytest.raises(ValueError, match="max_steps 10 is above the predictor's step budget 9"):
        predictor.predict(["q?"], k=1, max_steps=10)
    capped = load(directory, num_slots=4)
    assert capped.max_steps == 4
    assert all(len(c.program) <= 4 for c in capped.predict(["Any question?"], k=10)[0])


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_layers": 30}, "tensor layer_queries has shape"),
        ({"hidden_size": 48}, "has shape"),
        ({"num_blocks": 1}, "unexpected tensors"),
        ({"num_blocks": 3}, "missing tensors"),
        ({"k_max": 3}, "K_max 3 vs 4"),
        ({"encoder_dim": 1024}, r"input_norm.weight has shape \(384,\) vs \(1024,\)"),
        ({"max_steps": 13}, "max_steps 13 is outside"),
        ({"num_heads": 5}, "not divisible"),
        ({"version": 2}, "not a polar-predictor v1"),
        ({"num_layers": "6"}, "'num_layers' has the wrong type"),
        ({"encoder": None}, "missing key 'encoder'"),
        ({"training": None}, "missing key 'training'"),
        ({"encoder": "/nonexistent/encoder"}, "cannot load encoder"),
    ],
)
def test_config_mismatches(small_checkpoint, changes, message):
    directory, _ = small_checkpoint
    edit_config(directory, **changes)
    with pytest.raises(CheckpointError, match=message):
        load(directory)


def test_depth_mismatch(small_checkpoint):
    with pytest.raises(CheckpointError, match="depth 6 vs 30"):
        load(small_checkpoint[0], expected_num_layers=30)


def test_encoder_dim_mismatch(tmp_path, encoder_path):
    network_config = NetworkConfig(encoder_dim=1024, num_layers=6, hidden_size=32)
    config = CheckpointConfig(encoder_path, network_config, None, 6, 6, {})
    save(tmp_path, PredictorNetwork(network_config), config)
    with pytest.raises(CheckpointError, match="gives 384-d token embeddings vs encoder_dim 1024"):
        load(tmp_path)


def test_missing_files(small_checkpoint, tmp_path):
    directory, _ = small_checkpoint
    with pytest.raises(CheckpointError, match="missing config.json"):
        load(tmp_path / "nowhere")
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load(directory)


def test_corrupt_files(small_checkpoint):
    directory, _ = small_checkpoint
    weights = directory / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        load(directory)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        load(directory)
    weights.write_bytes(intact)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load(directory)


def test_wrong_tensor_shape_is_named(small_checkpoint):
    directory, _ = small_checkpoint
    state = load_file(directory / "model.safetensors")
    state["op_head.weight"] = torch.zeros(4, 32)
    save_file(state, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"op_head.weight has shape \(4, 32\) vs \(3, 32\)"):
        load(directory)


def test_encoder_override(small_checkpoint, encoder_path, tmp_path):
    directory, _ = small_checkpoint
    copy = tmp_path / "encoder-copy"
    shutil.copytree(encoder_path, copy)
    edit_config(directory, encoder="/moved/away")
    assert load(directory, encoder=str(copy)).predict(["Question?"], k=1)[0]


def test_cli_predict_json(trained_checkpoint, capsys):
    assert main(["predict", "--ckpt", str(trained_checkpoint), "--k", "3", "--json", QUESTION]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    candidates = json.loads(lines[-1])
    assert len(candidates) == 3 and len(lines) == 4
    assert candidates[0]["program"] == list(TOPIC_PROGRAMS["trains"])
    assert candidates[0]["text"] == format_program(TOPIC_PROGRAMS["trains"]) == "0-7,4-7"
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    assert "0-7,4-7" in lines[0]


def test_cli_predict_error_names_the_mismatch(small_checkpoint, capsys):
    directory, _ = small_checkpoint
    edit_config(directory, k_max=5)
    assert main(["predict", "--ckpt", str(directory), "How many?"]) == 1
    assert "K_max 5 vs 4" in capsys.readouterr().err


def test_cli_train_reads_depth_from_base_model(
    tmp_path, synthetic_train, encoder_path, embedding_cache, capsys
):
    base_model = tmp_path / "base"
    base_model.mkdir()
    (base_model / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_hidden_layers": SYNTHETIC_DEPTH})
    )
    build_tokenizer().save_pretrained(base_model)  # the predictor reads prompts in its tokens
    out = tmp_path / "ckpt"
    argv = ["train", "--data", str(synthetic_train[0]), "--encoder", encoder_path]
    argv += ["--base-model", str(base_model), "--out", str(out), "--epochs", "1"]
    argv += ["--hidden-size", "32", "--cache-dir", str(embedding_cache), "--max-steps", "14"]
    argv += ["--threads", "1"]
    assert main(argv) == 0
    assert "saved" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["num_layers"] == SYNTHETIC_DEPTH
    assert config["base_model"] == str(base_model)
    assert config["encoder"] == encoder_path
    assert (config["max_steps"], config["max_steps_observed"]) == (14, 12)
    assert config["training"]["selected"]["epochs"] == 1
    with pytest.raises(CheckpointError, match="depth 8 vs 24"):
        load(out, expected_num_layers=24)


def test_cli_import_mcts(tmp_path, capsys):
    source = tmp_path / "merged_mcts_samples.json"
    sample = {"question": "q?", "gt_ans": "1", "final_valid_transitions": [[0, 1, 1]]}
    source.write_text(json.dumps({"samples": [sample, sample]}))
    out = tmp_path / "supervision.jsonl"
    assert main(["import-mcts", str(source), "--out", str(out)]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out
    assert json.loads(out.read_text().splitlines()[0])["valid_programs"] == [[0, 1, 1]]

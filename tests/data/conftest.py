"""Shared fixtures for the model/data tests: prepared models and one vLLM engine per model.

Models are prepared into the default cache (``$VLLM_POLAR_CACHE`` or ``~/.cache/vllm-polar``) so
that they are reused between runs. Engines run stock vLLM (the PoLar plugin is kept out of them)
in float32 with a 2 GiB KV cache; each is shared by the tests of the module that uses it and
shut down after that module, so the two models never hold memory at the same time.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@contextlib.contextmanager
def stock_vllm_env():
    """Environment for starting a stock engine; restored once it runs (workers inherit it)."""
    saved = {k: os.environ.get(k) for k in ("VLLM_PLUGINS", "VLLM_CPU_KVCACHE_SPACE")}
    os.environ["VLLM_PLUGINS"] = ""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_engine(model: Path):
    """A stock engine that offers the boxed-answer stop (inert for requests without it)."""
    from vllm import LLM

    from polar.stopping import BoxedAnswerStop

    with stock_vllm_env():
        return LLM(
            model=str(model),
            dtype="float32",
            max_model_len=1024,
            enforce_eager=True,
            seed=0,
            logits_processors=[BoxedAnswerStop],
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED_DATA.resolve()
    assert path.is_dir(), f"benchmark data folder {path} is missing"
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from polar.models import prepare

    return prepare("smollm2-135m")


@pytest.fixture(scope="session")
def qwen_path() -> Path:
    from polar.models import prepare

    return prepare("qwen2.5-coder-0.5b")


@contextlib.contextmanager
def running_engine(model: Path):
    """A stock engine for the duration of the block, shut down (workers included) after it."""
    llm = start_engine(model)
    try:
        yield llm
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()


@pytest.fixture(scope="module")
def smollm2_llm(smollm2_path: Path):
    """Module-scoped, like ``qwen_llm``: at most one of these engines runs at a time."""
    with running_engine(smollm2_path) as llm:
        yield llm


@pytest.fixture(scope="module")
def qwen_llm(qwen_path: Path):
    with running_engine(qwen_path) as llm:
        yield llm

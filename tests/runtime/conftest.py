"""Shared engines and checkpoints for the runtime tests (engines start once per module)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt

from tests.runtime.reference import Reference
from tests.runtime.tiny import NUM_LAYERS, build_checkpoint

MAX_STEPS = 12
"""Slot count of the test engines: fits every program of PROGRAMS (the longest has 11 steps)."""

PROGRAMS = {
    "identity": (0, 1, 2, 3, 4, 5),
    "skip": (0, 1, 3, 4, 5),
    "repeat": (0, 1, 2, 2, 3, 4, 5),
    "segment_repeat": (0, 1, 2, 3, 4, 5, 4, 5),
    "longer_than_depth": (0, 1, 2, 3, 4, 5, 3, 4, 5, 1, 2),
    "one_step": (3,),
}
assert all(len(p) <= MAX_STEPS and max(p) < NUM_LAYERS for p in PROGRAMS.values())

MAX_TOKENS = 16


def prompt_ids(index: int, length: int) -> list[int]:
    """A deterministic prompt of ``length`` token ids (vocab of the tiny tokenizer)."""
    return [(7 * index + 3 * j) % 390 + 2 for j in range(length)]


def greedy(program: object, max_tokens: int = MAX_TOKENS) -> SamplingParams:
    """Greedy params carrying ``program`` (a tuple is sent as a list; other values as given)."""
    if isinstance(program, tuple):
        program = list(program)
    extra = None if program is None else {"polar_program": program}
    return SamplingParams(
        max_tokens=max_tokens, temperature=0, logprobs=0, ignore_eos=True, extra_args=extra
    )


def generate(
    llm: LLM, prompts: list[list[int]], params: list[SamplingParams]
) -> list[tuple[list[int], list[float]]]:
    """(tokens, logprobs of those tokens) per request."""
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
    )
    results = []
    for output in outputs:
        completion = output.outputs[0]
        tokens = list(completion.token_ids)
        results.append((tokens, [step[t].logprob for step, t in zip(completion.logprobs, tokens)]))
    return results


def start_engine(path: Path, polar: dict | None, **kwargs) -> LLM:
    extra = {"additional_config": {"polar": polar}} if polar is not None else {}
    settings = {"max_model_len": 256, **kwargs}
    return LLM(model=str(path), dtype="float32", seed=0, **extra, **settings)


def stop_engine(llm: LLM) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> Iterator:
    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_checkpoint(family, root / family)
        return built[family]

    yield get


@pytest.fixture(scope="session")
def references(checkpoints):
    loaded: dict[str, Reference] = {}

    def get(family: str) -> Reference:
        if family not in loaded:
            loaded[family] = Reference(str(checkpoints(family)))
        return loaded[family]

    return get


@pytest.fixture(scope="module")
def qwen3_engine(checkpoints) -> Iterator[LLM]:
    """PoLar Qwen3 engine with small chunks, prefix caching on (vLLM's default)."""
    llm = start_engine(
        checkpoints("qwen3"),
        {"max_steps": MAX_STEPS},
        max_num_batched_tokens=32,
        enable_chunked_prefill=True,
        enable_prefix_caching=True,
    )
    yield llm
    stop_engine(llm)

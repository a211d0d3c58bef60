"""A real model (SmolLM2-135M, 30 layers) with a predictor trained for it, and engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vllm import SamplingParams

from polar.models import prepare
from polar.predictor.checkpoint import load
from polar.predictor.fit import fit
from polar.predictor.labels import write_supervision
from polar.prompts import direct_answer_prompt, predictor_input
from tests.predictor.synthetic import (
    HELD_OUT_NAMES,
    SYNTHETIC_TRAINING,
    TRAIN_NAMES,
    synthetic_rows,
)
from vllm_polar.program import parse_program

DEPTH = 30
TOPIC_PROGRAMS = {
    "apples": parse_program("0-19,24-29"),
    "trains": parse_program("0-15,12-29"),
    "coins": parse_program("0-9,12-29"),
}
"""Each topic's questions are labelled with their own program of SmolLM2's 30 layers."""
MAX_TOKENS = 12


def questions(per_topic: int = 2) -> list[str]:
    """Held-out questions (names unseen in training), ``per_topic`` per topic."""
    rows = synthetic_rows(per_topic, HELD_OUT_NAMES, seed=7, topic_programs=TOPIC_PROGRAMS)
    return [row.question for row in rows]


def served_prompts(tokenizer, per_topic: int = 2) -> tuple[list[str], list[str]]:
    """Held-out questions as a user sends them (the direct-answer prompt in the model's template,
    the form the predictor was trained on) and the text the predictor reads for each."""
    held_out = questions(per_topic)
    return (
        [direct_answer_prompt(q, tokenizer) for q in held_out],
        [predictor_input(q, tokenizer) for q in held_out],
    )


def greedy(n: int = 1) -> SamplingParams:
    return SamplingParams(max_tokens=MAX_TOKENS, temperature=0, n=n, ignore_eos=True)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return prepare("smollm2-135m")


@pytest.fixture(scope="session")
def predictor_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serving_predictor")
    rows = synthetic_rows(16, TRAIN_NAMES, seed=0, topic_programs=TOPIC_PROGRAMS)
    write_supervision(rows, root / "supervision.jsonl")
    fit(
        root / "supervision.jsonl",
        str(prepare("minilm")),
        DEPTH,
        root / "ckpt",
        base_model="smollm2-135m",
        cache_dir=root / "embeddings",
        **SYNTHETIC_TRAINING,
    )
    return root / "ckpt"


@pytest.fixture(scope="session")
def predictor(predictor_dir):
    return load(predictor_dir, expected_num_layers=DEPTH, encoder=str(prepare("minilm")))


@pytest.fixture(scope="session")
def offline_llm(smollm2, predictor_dir) -> Iterator:
    from vllm_polar import LLM

    llm = LLM(
        model=str(smollm2),
        polar_predictor=predictor_dir,
        dtype="float32",
        max_model_len=512,
        seed=0,
    )
    yield llm
    llm.llm_engine.engine_core.shutdown()

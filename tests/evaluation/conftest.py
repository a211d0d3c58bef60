"""SmolLM2-135M (30 layers) with a tiny predictor trained for it on the synthetic set."""

from __future__ import annotations

from pathlib import Path

import pytest

from polar.models import prepare
from polar.predictor.fit import fit
from polar.predictor.labels import write_supervision
from tests.predictor.synthetic import SYNTHETIC_TRAINING, TRAIN_NAMES, synthetic_rows
from vllm_polar.program import parse_program

DEPTH = 30
TOPIC_PROGRAMS = {
    "apples": parse_program("0-19,24-29"),
    "trains": parse_program("0-15,12-29"),
    "coins": parse_program("0-9,12-29"),
}


@pytest.fixture(scope="session")
def tiny_predictor(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its supervision file)."""
    root = tmp_path_factory.mktemp("eval_predictor")
    rows = synthetic_rows(8, TRAIN_NAMES, seed=0, topic_programs=TOPIC_PROGRAMS)
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
    return root / "ckpt", root / "supervision.jsonl"

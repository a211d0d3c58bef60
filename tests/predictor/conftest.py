"""Predictor test fixtures: the offline encoder, the synthetic set, a trained checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from polar.models import prepare
from polar.predictor.fit import fit
from polar.predictor.labels import SupervisionRow, write_supervision
from tests.predictor.synthetic import (
    HELD_OUT_NAMES,
    SYNTHETIC_DEPTH,
    SYNTHETIC_TRAINING,
    TRAIN_NAMES,
    synthetic_rows,
)


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread: on a small shared CPU two threads contend and run 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def encoder_path() -> str:
    return str(prepare("minilm"))


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("token_embeddings")


@pytest.fixture(scope="session")
def synthetic_train(tmp_path_factory) -> tuple[Path, list[SupervisionRow]]:
    rows = synthetic_rows(per_topic=16, names=TRAIN_NAMES, seed=0)
    path = tmp_path_factory.mktemp("data") / "synthetic.jsonl"
    write_supervision(rows, path)
    return path, rows


@pytest.fixture(scope="session")
def synthetic_held_out() -> list[SupervisionRow]:
    return synthetic_rows(per_topic=5, names=HELD_OUT_NAMES, seed=1)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, synthetic_train, encoder_path, embedding_cache) -> Path:
    """A checkpoint trained on the synthetic set (depth 8, d = 64)."""
    out = tmp_path_factory.mktemp("trained") / "ckpt"
    with single_thread():
        fit(
            synthetic_train[0],
            encoder_path,
            SYNTHETIC_DEPTH,
            out,
            cache_dir=embedding_cache,
            **SYNTHETIC_TRAINING,
        )
    return out

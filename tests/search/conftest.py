"""One real PoLar engine for the search integration tests (SmolLM2-135M, prepared offline)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polar.models import prepare
from polar.search.engine import default_slots, model_depth, start_engine, stop_engine

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def smollm2() -> Iterator[tuple]:
    """(engine, depth, slots) for SmolLM2-135M-Instruct (30 layers)."""
    path = prepare(MODEL)
    depth = model_depth(str(path))
    slots = default_slots(depth)
    llm = start_engine(path, slots, max_model_len=512)
    yield llm, depth, slots
    stop_engine(llm)

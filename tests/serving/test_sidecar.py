"""The predictor sidecar: micro-batching off the event loop, caching, and failure fallback."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from vllm_polar import metrics
from vllm_polar.program import identity
from vllm_polar.runtime.predictor import PredictorSidecar


@dataclass
class Candidate:
    program: tuple[int, ...]


class RecordingPredictor:
    """Answers program (0, len(prompt) % 4) and records the batches it was called with."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail
        self.release = threading.Event()

    def predict(self, prompts: list[str], k: int) -> list[list[Candidate]]:
        self.release.wait(timeout=10)
        self.batches.append(list(prompts))
        if self.fail:
            raise RuntimeError("predictor broke")
        return [[Candidate((0, len(p) % 4))] for p in prompts]


def test_concurrent_requests_are_batched_and_cached():
    predictor = RecordingPredictor()
    sidecar = PredictorSidecar(predictor, num_layers=4)
    prompts = [f"question {'x' * i}" for i in range(8)]

    async def run():
        tasks = [asyncio.ensure_future(sidecar.predict_async(p, 1)) for p in prompts]
        await asyncio.sleep(0.2)  # all eight are queued while the worker waits
        predictor.release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    assert results == [[(0, len(p) % 4)] for p in prompts]
    assert sum(len(b) for b in predictor.batches) == 8 and len(predictor.batches) <= 2
    assert sidecar.predict(prompts[:3], 1) == results[:3]
    assert sum(len(b) for b in predictor.batches) == 8  # served from the cache


def test_failed_prediction_runs_identity_and_counts():
    predictor = RecordingPredictor(fail=True)
    predictor.release.set()
    sidecar = PredictorSidecar(predictor, num_layers=4)
    before = metrics.PREDICTOR_FALLBACKS._value.get()
    assert sidecar.predict(["a", "b"], 2) == [[identity(4)], [identity(4)]]
    assert asyncio.run(sidecar.predict_async("c", 1)) == [identity(4)]
    assert metrics.PREDICTOR_FALLBACKS._value.get() == before + 3

"""The predictor sidecar: one worker for every caller, micro-batching, caching, and faults that
stay with the prompt they happen to (cancelled callers, failing and blank prompts, timeouts)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from vllm_polar import metrics
from vllm_polar.program import identity
from vllm_polar.runtime import predictor as sidecar_module
from vllm_polar.runtime.predictor import PredictorSidecar

WAIT = 10  # seconds; only reached when something is broken


@dataclass
class Candidate:
    program: tuple[int, ...]


def program_for(prompt: str) -> tuple[int, ...]:
    return (0, len(prompt) % 4)


class ScriptedPredictor:
    """Answers ``program_for(prompt)``; records each batch and the thread that ran it.

    Raises for a batch holding a prompt with "poison".  With ``hold`` set, every call waits until
    ``release`` is set (``entered`` tells the test it is waiting).
    """

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def predict(self, prompts: list[str], k: int) -> list[list[Candidate]]:
        self.entered.set()
        assert self.release.wait(timeout=WAIT)
        self.batches.append(list(prompts))
        self.threads.add(threading.current_thread().name)
        if any("poison" in p for p in prompts):
            raise RuntimeError("predictor broke")
        return [[Candidate(program_for(p))] for p in prompts]


def fallbacks(reason: str) -> float:
    return metrics.PREDICTOR_FALLBACKS.labels(reason=reason)._value.get()


def test_prompts_queued_while_the_worker_is_busy_run_as_one_batch_then_hit_the_cache():
    predictor = ScriptedPredictor(hold=True)
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=WAIT)
    prompts = [f"question {'x' * i}" for i in range(8)]

    async def run():
        first = asyncio.ensure_future(sidecar.predict_async(prompts[0], 1))
        await asyncio.to_thread(predictor.entered.wait, WAIT)  # the worker holds prompt 0
        rest = [asyncio.ensure_future(sidecar.predict_async(p, 1)) for p in prompts[1:]]
        await asyncio.sleep(0)
        predictor.release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(run())
    assert results == [[program_for(p)] for p in prompts]
    assert predictor.batches == [[prompts[0]], sorted(prompts[1:])]
    assert sidecar.predict(prompts[:3], 1) == results[:3]
    assert len(predictor.batches) == 2  # served from the cache


def test_a_cancelled_request_is_skipped_and_later_predictions_still_run():
    predictor = ScriptedPredictor(hold=True)
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=WAIT)

    async def run():
        busy = asyncio.ensure_future(sidecar.predict_async("first", 1))
        await asyncio.to_thread(predictor.entered.wait, WAIT)
        gone = asyncio.ensure_future(sidecar.predict_async("client went away", 1))
        await asyncio.sleep(0)
        gone.cancel()  # what a client disconnect does to the awaiting handler
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        for _ in range(100):  # the cancellation reaches the queued job through callbacks
            if all(job.future.cancelled() for job in list(sidecar.pending.queue)):
                break
            await asyncio.sleep(0.01)
        assert [job.future.cancelled() for job in list(sidecar.pending.queue)] == [True]
        predictor.release.set()
        await busy
        return await sidecar.predict_async("after", 1)

    assert asyncio.run(run()) == [program_for("after")]
    assert predictor.batches == [["first"], ["after"]]
    assert sidecar.worker.is_alive()


def test_a_failing_prompt_runs_the_identity_alone_and_its_batch_keeps_its_programs():
    predictor = ScriptedPredictor()
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=WAIT)
    before = fallbacks("error")
    prompts = ["alpha", "poison pill", "gamma!"]
    assert sidecar.predict(prompts, 1) == [
        [program_for("alpha")],
        [identity(4)],
        [program_for("gamma!")],
    ]
    assert fallbacks("error") == before + 1
    assert sidecar.predict(["poison pill"], 1) == [[identity(4)]]  # failures are not cached
    assert fallbacks("error") == before + 2


def test_blank_prompts_run_the_identity_without_the_network():
    predictor = ScriptedPredictor()
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=WAIT)
    before = fallbacks("blank prompt")
    assert sidecar.predict(["", "  \n", "fine"], 1) == [
        [identity(4)],
        [identity(4)],
        [program_for("fine")],
    ]
    assert predictor.batches == [["fine"]]
    assert fallbacks("blank prompt") == before + 2


def test_a_prediction_slower_than_the_bound_runs_the_identity_and_the_worker_recovers():
    predictor = ScriptedPredictor(hold=True)
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=0.2)
    before = fallbacks("timeout")
    assert asyncio.run(sidecar.predict_async("slow", 1)) == [identity(4)]
    assert sidecar.predict(["slow too"], 1) == [[identity(4)]]
    assert fallbacks("timeout") == before + 2
    predictor.release.set()
    sidecar.timeout_s = WAIT
    assert sidecar.predict(["quick"], 1) == [[program_for("quick")]]


def test_every_caller_thread_shares_the_one_worker():
    predictor = ScriptedPredictor()
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=WAIT)
    prompts = [f"prompt {i} {'y' * i}" for i in range(40)]

    def call(i: int):
        if i % 2:
            return sidecar.predict([prompts[i]], 1)[0]
        return asyncio.run(sidecar.predict_async(prompts[i], 1))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(len(prompts))))
    assert results == [[program_for(p)] for p in prompts]
    assert predictor.threads == {"polar-predictor"}


def test_the_cache_is_bounded_by_programs(monkeypatch):
    monkeypatch.setattr(sidecar_module, "CACHE_PROGRAMS", 10)
    sidecar = PredictorSidecar(ScriptedPredictor(), num_layers=4, timeout_s=WAIT)
    sidecar.predict([f"prompt {i}" for i in range(25)], 1)
    assert sidecar.cached_programs == len(sidecar.cache) == 10
    key = sidecar_module.cache_key("prompt 24", 1)
    assert key in sidecar.cache and len(key[0]) == 16  # a digest, not the prompt text


@pytest.mark.parametrize("k", [1, 3])
def test_cache_entries_are_per_k(k):
    predictor = ScriptedPredictor()
    sidecar = PredictorSidecar(predictor, num_layers=4, timeout_s=WAIT)
    sidecar.predict(["same"], 1)
    sidecar.predict(["same"], k)
    assert len(predictor.batches) == (1 if k == 1 else 2)

"""Front-end predictor sidecar: prompt text -> top-k programs, cached and micro-batched.

One sidecar per predictor checkpoint per process, loaded (and warmed up) at engine start.  Every
caller goes through one queue served by one worker thread, the only thread that runs the network
(tokenizers and models are not shared across threads): the server awaits
:meth:`PredictorSidecar.predict_async`, offline callers use :meth:`predict` with all their prompts
at once.  Whatever goes wrong stays with the prompt it happened to:

- a caller that goes away (client disconnect) cancels its queued prompt; the worker skips it;
- a batch that fails is re-run prompt by prompt, so only the prompt that fails runs the identity;
- a blank prompt runs the identity without the network;
- a caller that waits longer than ``timeout_s`` runs the identity.

Each fallback is logged and counted (``polar:predictor_fallbacks_total{reason=...}``); none fails
the request.  The cache holds at most ``CACHE_PROGRAMS`` programs, keyed by a digest of the text.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

from vllm.logger import init_logger

from vllm_polar import metrics
from vllm_polar.config import PolarConfig
from vllm_polar.program import Program, identity

logger = init_logger("vllm.polar")

CACHE_PROGRAMS = 16384
"""Most programs the cache holds (all prompts and k together)."""
MAX_BATCH = 64
"""Most prompts in one run of the network."""


@dataclass(frozen=True)
class Job:
    """One prompt waiting for the worker; ``future`` gets its programs."""

    text: str
    k: int
    future: Future


def cache_key(text: str, k: int) -> tuple[bytes, int]:
    return hashlib.blake2b(text.encode(), digest_size=16).digest(), k


class PredictorSidecar:
    def __init__(self, predictor, num_layers: int, timeout_s: float) -> None:
        self.predictor = predictor
        self.num_layers = num_layers
        self.timeout_s = timeout_s
        self.cache: OrderedDict[tuple[bytes, int], list[Program]] = OrderedDict()
        self.cached_programs = 0
        self.cache_lock = threading.Lock()
        self.pending: queue.Queue[Job] = queue.Queue()
        self.worker = threading.Thread(target=self._serve, name="polar-predictor", daemon=True)
        self.worker.start()

    def predict(self, prompts: list[str], k: int = 1) -> list[list[Program]]:
        """Up to ``k`` distinct programs per prompt, best first (never empty)."""
        futures = [self._submit(text, k) for text in prompts]
        deadline = time.monotonic() + self.timeout_s
        results = []
        for future in futures:
            try:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                future.cancel()
                results.append(self._fallback("timeout", 1))
        return results

    async def predict_async(self, prompt: str, k: int = 1) -> list[Program]:
        """:meth:`predict` for one prompt, awaited; cancelling the caller cancels the job."""
        future = self._submit(prompt, k)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            return self._fallback("timeout", 1)

    def _submit(self, text: str, k: int) -> Future:
        future: Future = Future()
        with self.cache_lock:
            programs = self.cache.get(cache_key(text, k))
            if programs is not None:
                self.cache.move_to_end(cache_key(text, k))
        if programs is not None:
            future.set_result(programs)
        else:
            self.pending.put(Job(text, k, future))
        return future

    def _fallback(self, reason: str, count: int) -> list[Program]:
        logger.warning("PoLar predictor %s; %d request(s) run the identity program", reason, count)
        metrics.PREDICTOR_FALLBACKS.labels(reason=reason).inc(count)
        return [identity(self.num_layers)]

    def _serve(self) -> None:
        while True:
            jobs = [self.pending.get()]
            while len(jobs) < MAX_BATCH:
                try:
                    jobs.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            try:
                self._answer(live)
            except Exception:  # never let the worker die: the queue would wedge
                logger.exception("PoLar predictor worker failed on a batch")
                for job in live:
                    if not job.future.done():
                        job.future.set_result(self._fallback("error", 1))

    def _answer(self, jobs: list[Job]) -> None:
        for k in sorted({job.k for job in jobs}):
            texts = sorted({job.text for job in jobs if job.k == k})
            programs = dict(zip(texts, self._run(texts, k)))
            for job in jobs:
                if job.k == k:
                    job.future.set_result(programs[job.text])

    def _run(self, texts: list[str], k: int) -> list[list[Program]]:
        """Programs for each text; a failing batch is re-run text by text."""
        blank = [not text.strip() for text in texts]
        if any(blank):
            self._fallback("blank prompt", sum(blank))
        asked = [text for text, is_blank in zip(texts, blank) if not is_blank]
        predicted = iter(self._predict_batch(asked, k) if asked else [])
        return [[identity(self.num_layers)] if is_blank else next(predicted) for is_blank in blank]

    def _predict_batch(self, texts: list[str], k: int) -> list[list[Program]]:
        start = time.perf_counter()
        try:
            candidates = self.predictor.predict(texts, k)
        except Exception:
            if len(texts) > 1:
                return [programs for text in texts for programs in self._predict_batch([text], k)]
            logger.warning("PoLar predictor failed on one prompt", exc_info=True)
            return [self._fallback("error", 1)]
        metrics.PREDICTOR_LATENCY.observe((time.perf_counter() - start) / len(texts))
        results = [
            [c.program for c in cands] or [identity(self.num_layers)] for cands in candidates
        ]
        with self.cache_lock:
            for text, programs in zip(texts, results):
                self.cache[cache_key(text, k)] = programs
                self.cached_programs += len(programs)
            while self.cached_programs > CACHE_PROGRAMS:
                self.cached_programs -= len(self.cache.popitem(last=False)[1])
        return results


_sidecars: dict[tuple[str, float], PredictorSidecar] = {}


def sidecar_for(config: PolarConfig) -> PredictorSidecar | None:
    """The process's sidecar for ``config.predictor`` (loaded on first use), or None."""
    if config.predictor is None:
        return None
    key = (config.predictor, config.predictor_timeout_s)
    if key not in _sidecars:
        import torch

        from polar.predictor.checkpoint import load

        device = "cuda" if torch.cuda.is_available() else "cpu"
        predictor = load(
            config.predictor,
            expected_num_layers=config.num_layers,
            num_slots=config.max_steps,
            device=device,
        )
        predictor.predict(["warm-up"], 1)  # the first request should not pay for lazy init
        _sidecars[key] = PredictorSidecar(predictor, config.num_layers, config.predictor_timeout_s)
        logger.info("PoLar predictor %s loaded on %s", config.predictor, device)
    return _sidecars[key]

"""Front-end predictor sidecar: prompt text -> top-k programs, cached and micro-batched.

One sidecar per predictor checkpoint per process, loaded at engine start.  The server awaits
:meth:`PredictorSidecar.predict_async`, which queues the prompt for a worker thread that runs
whatever is queued as one batch — the event loop never runs the network.  Offline callers use
:meth:`predict` with all their prompts at once.  A prompt whose prediction fails runs the
identity program: the failure is logged, counted, and never fails the request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future

from vllm.logger import init_logger

from vllm_polar import metrics
from vllm_polar.config import PolarConfig
from vllm_polar.program import Program, identity

logger = init_logger("vllm.polar")

CACHE_SIZE = 4096
MAX_BATCH = 64


class PredictorSidecar:
    def __init__(self, predictor, num_layers: int) -> None:
        self.predictor = predictor
        self.num_layers = num_layers
        self.cache: OrderedDict[tuple[str, int], list[Program]] = OrderedDict()
        self.lock = threading.Lock()
        self.pending: queue.Queue[tuple[str, int, Future]] = queue.Queue()
        self.worker = threading.Thread(target=self._serve, name="polar-predictor", daemon=True)
        self.worker.start()

    def predict(self, prompts: list[str], k: int = 1) -> list[list[Program]]:
        """Up to ``k`` distinct programs per prompt, best first (never empty)."""
        results: list[list[Program] | None] = [self._cached(p, k) for p in prompts]
        missing = sorted({p for p, r in zip(prompts, results) if r is None})
        if missing:
            fresh = dict(zip(missing, self._run(missing, k)))
            results = [r if r is not None else fresh[p] for p, r in zip(prompts, results)]
        return results

    async def predict_async(self, prompt: str, k: int = 1) -> list[Program]:
        cached = self._cached(prompt, k)
        if cached is not None:
            return cached
        future: Future = Future()
        self.pending.put((prompt, k, future))
        return await asyncio.wrap_future(future)

    def _cached(self, prompt: str, k: int) -> list[Program] | None:
        with self.lock:
            programs = self.cache.get((prompt, k))
            if programs is not None:
                self.cache.move_to_end((prompt, k))
            return programs

    def _run(self, prompts: list[str], k: int) -> list[list[Program]]:
        """Run the network on one batch; a failed batch gives every prompt the identity."""
        start = time.perf_counter()
        try:
            candidates = self.predictor.predict(prompts, k)
            results = [
                [c.program for c in cands] or [identity(self.num_layers)] for cands in candidates
            ]
        except Exception:
            logger.warning(
                "PoLar predictor failed; %d request(s) run the identity program",
                len(prompts),
                exc_info=True,
            )
            metrics.PREDICTOR_FALLBACKS.inc(len(prompts))
            return [[identity(self.num_layers)] for _ in prompts]
        metrics.PREDICTOR_LATENCY.observe((time.perf_counter() - start) / len(prompts))
        with self.lock:
            for prompt, programs in zip(prompts, results):
                self.cache[(prompt, k)] = programs
                while len(self.cache) > CACHE_SIZE:
                    self.cache.popitem(last=False)
        return results

    def _serve(self) -> None:
        while True:
            batch = [self.pending.get()]
            while len(batch) < MAX_BATCH and not self.pending.empty():
                batch.append(self.pending.get_nowait())
            for k in sorted({k for _, k, _ in batch}):
                group = [(p, f) for p, kk, f in batch if kk == k]
                programs = self._run([p for p, _ in group], k)
                for (_, future), result in zip(group, programs):
                    future.set_result(result)


_sidecars: dict[str, PredictorSidecar] = {}


def sidecar_for(config: PolarConfig) -> PredictorSidecar | None:
    """The process's sidecar for ``config.predictor`` (loaded on first use), or None."""
    if config.predictor is None:
        return None
    if config.predictor not in _sidecars:
        import torch

        from polar.predictor.checkpoint import load

        device = "cuda" if torch.cuda.is_available() else "cpu"
        predictor = load(
            config.predictor,
            expected_num_layers=config.num_layers,
            num_slots=config.max_steps,
            device=device,
        )
        _sidecars[config.predictor] = PredictorSidecar(predictor, config.num_layers)
        logger.info("PoLar predictor %s loaded on %s", config.predictor, device)
    return _sidecars[config.predictor]

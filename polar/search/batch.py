"""Run many question searches together through one ``evaluate`` callable.

Every round, each active search selects a wave; the (question, program) pairs of all waves that
no earlier round evaluated go to ``evaluate`` in one call, deduplicated, so the engine sees one
large batch and never the same pair twice (the cache is shared by searches of the same question
in different spaces: the identity is evaluated once per question, not once per space).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from polar.search.mcts import QuestionSearch
from polar.search.records import Graded
from vllm_polar.program import Program

Pair = tuple[str, Program]
"""(question id, program)."""

Results = dict[str, dict[Program, Graded]]
"""Question id → {evaluated program: its graded completion}."""


class Evaluator(Protocol):
    """Rewards (1.0 correct, 0.0 wrong) for a batch of distinct (question id, program) pairs;
    each evaluated pair's graded completion lands in ``results``."""

    results: Results

    def __call__(self, pairs: Sequence[Pair]) -> Sequence[float]: ...


@dataclass
class Job:
    """One search of one question in one space."""

    space: str
    question_id: str
    search: QuestionSearch


@dataclass
class Progress:
    """Running totals the progress bar shows."""

    jobs_done: int = 0
    simulations: int = 0
    evaluations: int = 0
    valid_found: int = 0
    seconds: float = 0.0

    def rate(self) -> float:
        return self.simulations / self.seconds if self.seconds > 0 else 0.0


def run_jobs(
    jobs: Iterable[Job],
    evaluate: Callable[[Sequence[Pair]], Sequence[float]],
    on_done: Callable[[Job], None],
    max_active: int = 16,
    cache: dict[Pair, float] | None = None,
    on_round: Callable[[Progress], None] | None = None,
) -> Progress:
    """Search every job to its simulation budget; ``on_done(job)`` as soon as one finishes.

    At most ``max_active`` jobs are in flight; their waves form one ``evaluate`` call per round.
    """
    cache = {} if cache is None else cache
    pending = iter(jobs)
    active: list[Job] = []
    progress = Progress()
    start = time.perf_counter()
    while True:
        active.extend(next_jobs(pending, max_active - len(active)))
        if not active:
            return progress
        waves = [(job, job.search.select_wave()) for job in active]
        pairs = dict.fromkeys((job.question_id, p) for job, programs in waves for p in programs)
        todo = [pair for pair in pairs if pair not in cache]
        if todo:
            cache.update(zip(todo, (float(r) for r in evaluate(todo))))
        for job, programs in waves:
            job.search.complete_wave([cache[(job.question_id, p)] for p in programs])
            progress.simulations += len(programs)
        progress.evaluations += len(todo)
        for job in [job for job in active if job.search.done]:
            active.remove(job)
            progress.jobs_done += 1
            progress.valid_found += len(job.search.valid_programs())
            on_done(job)
        progress.seconds = time.perf_counter() - start
        if on_round is not None:
            on_round(progress)


def next_jobs(pending: Iterator[Job], count: int) -> list[Job]:
    return list(itertools.islice(pending, max(count, 0)))

"""Program search end to end: questions → MCTS jobs → one engine → supervision + statistics.

:func:`search_questions` is the engine-free driver (any ``evaluate`` callable); :func:`search`
starts one PoLar engine on a model and runs it for a task. Output paths: the first space's rows go
to ``out``, every further space's to ``<out stem>.<space><suffix>`` beside it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from polar.search.batch import Evaluate, Job, Progress, run_jobs
from polar.search.mcts import MCTSConfig, QuestionSearch
from polar.search.records import append_row, make_row, read_rows, resume
from polar.search.space import SearchSpace
from polar.tasks import Example
from vllm_polar.program import Program, identity

AnswersOf = Callable[[str], dict[Program, str | None]]
"""Question id → {evaluated program: extracted answer}, for the output rows."""


@dataclass(frozen=True)
class SearchSettings:
    """Everything that determines a question's search (stored in each row for resuming)."""

    depth: int
    min_steps: int
    max_steps: int
    max_block: int = 4
    max_repeats: int = 4
    max_layer_uses: int = 4
    seed: int = 0
    mcts: MCTSConfig = MCTSConfig()

    def space(self, kind: str) -> SearchSpace:
        return SearchSpace(
            kind=kind,
            max_block=self.max_block,
            max_repeats=self.max_repeats,
            max_layer_uses=self.max_layer_uses,
            min_steps=self.min_steps,
            max_steps=self.max_steps,
        )

    def record(self, kind: str) -> dict[str, Any]:
        return {"space": kind, **asdict(self)}


def output_paths(out: Path, spaces: Sequence[str]) -> dict[str, Path]:
    return {
        space: out if i == 0 else out.with_name(f"{out.stem}.{space}{out.suffix}")
        for i, space in enumerate(spaces)
    }


def search_questions(
    examples: Sequence[Example],
    evaluate: Evaluate,
    settings: SearchSettings,
    out: Path,
    spaces: Sequence[str] = ("skip_loop",),
    answers_of: AnswersOf | None = None,
    max_active: int = 32,
    show_progress: bool = True,
) -> Progress:
    """Search every (question, space) not yet in the output files; append a row as each ends."""
    paths = output_paths(out, spaces)
    done = set()
    for space, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        done |= resume(path, settings.record(space))
    by_id = {e.id: e for e in examples}
    root = identity(settings.depth)
    jobs = [
        Job(
            space=space,
            question_id=e.id,
            search=QuestionSearch(
                settings.space(space), settings.mcts, root, f"{settings.seed}/{space}/{e.id}"
            ),
        )
        for e in examples
        for space in spaces
        if (e.id, space) not in done
    ]
    total = len(spaces) * len(examples)
    bar = tqdm(
        total=total,
        initial=total - len(jobs),
        desc="searches",
        unit="q",
        file=sys.stderr,
        disable=not show_progress,
    )

    def finish(job: Job) -> None:
        answers = answers_of(job.question_id) if answers_of is not None else {}
        row = make_row(
            by_id[job.question_id], job.space, job.search, answers, settings.record(job.space)
        )
        append_row(paths[job.space], row)
        bar.update(1)

    def show(progress: Progress) -> None:
        bar.set_postfix(
            sims_per_s=f"{progress.rate():.1f}",
            evals=progress.evaluations,
            valid=progress.valid_found,
        )

    progress = run_jobs(jobs, evaluate, finish, max_active=max_active, on_round=show)
    bar.close()
    return progress


def write_stats(out: Path, spaces: Sequence[str], settings: SearchSettings, folder: Path) -> dict:
    """``search_stats.json`` and the plots in ``folder`` from the rows in the output files."""
    from polar.search.plots import write_plots
    from polar.search.stats import search_stats

    rows = {space: read_rows(path) for space, path in output_paths(out, spaces).items()}
    budgets = range(settings.min_steps, settings.max_steps + 1)
    stats = search_stats(rows, settings.depth, budgets)
    stats["settings"] = asdict(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "search_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    write_plots(stats, folder)
    return stats


def select_examples(
    task: str, split: str, limit: int | None = None, per_level: int | None = None
) -> list[Example]:
    """The task's rows: the first ``per_level`` of each level, then the first ``limit``."""
    from polar.tasks import load_task

    examples = load_task(task, split)
    if per_level is not None:
        taken: dict[Any, int] = {}
        kept = []
        for e in examples:
            level = e.metadata.get("level")
            if taken.get(level, 0) < per_level:
                taken[level] = taken.get(level, 0) + 1
                kept.append(e)
        examples = kept
    return examples[:limit] if limit is not None else examples


def search(
    model: str,
    task: str,
    out: Path,
    split: str = "train",
    limit: int | None = None,
    per_level: int | None = None,
    spaces: Sequence[str] = ("skip_loop",),
    slots: int | None = None,
    min_steps: int | None = None,
    max_steps: int | None = None,
    stats_dir: Path | None = None,
    max_active: int = 32,
    **settings: Any,
) -> dict:
    """Search ``task`` on ``model`` with one PoLar engine; returns the statistics.

    ``slots`` is the engine's S (default ceil(1.25 D)); the step budget defaults to
    ``[D // 2, S]``; ``settings`` are further :class:`SearchSettings` fields.
    """
    from polar.models import resolve
    from polar.search.engine import (
        EngineEvaluator,
        default_slots,
        model_depth,
        start_engine,
        stop_engine,
    )

    path = resolve(model)
    depth = model_depth(path)
    slots = slots or default_slots(depth)
    budget = SearchSettings(
        depth=depth,
        min_steps=min_steps or depth // 2,
        max_steps=max_steps or slots,
        **settings,
    )
    if budget.max_steps > slots:
        raise ValueError(f"max_steps {budget.max_steps} exceeds the engine's slot count {slots}")
    examples = select_examples(task, split, limit, per_level)
    llm = start_engine(path, slots)
    try:
        evaluator = EngineEvaluator(llm, examples)
        progress = search_questions(
            examples, evaluator, budget, out, spaces, evaluator.answers.get, max_active
        )
    finally:
        stop_engine(llm)
    print(
        f"{progress.jobs_done} searches, {progress.simulations} simulations, "
        f"{progress.evaluations} engine evaluations in {progress.seconds:.0f} s "
        f"({progress.rate():.2f} simulations/s)",
        file=sys.stderr,
    )
    return write_stats(out, spaces, budget, stats_dir or out.parent)

"""Program search end to end: questions → MCTS jobs → one engine → supervision + statistics.

:func:`search_questions` is the engine-free driver (any ``evaluate`` callable); :func:`search`
starts one PoLar engine on a model and runs it for a task. Output paths: the first space's rows go
to ``out``, every further space's to ``<out stem>.<space><suffix>`` beside it.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from polar.search.batch import Evaluator, Job, Progress, Results, run_jobs
from polar.search.controls import TEMPERATURES, read_controls
from polar.search.mcts import MCTSConfig, QuestionSearch
from polar.search.records import (
    GRADED_KEYS,
    append_row,
    evaluated_programs,
    make_row,
    read_rows,
    resume,
)
from polar.search.space import SearchSpace
from polar.tasks import Example
from vllm_polar.program import format_program, identity


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
    evaluator: Evaluator,
    settings: SearchSettings,
    out: Path,
    spaces: Sequence[str] = ("skip_loop",),
    max_active: int = 32,
    show_progress: bool = True,
    run: dict[str, Any] | None = None,
) -> Progress:
    """Search every (question, space) not yet in the output files; append a row as each ends.

    Stored rows fill ``evaluator.results`` in first, so a resumed run never evaluates a pair
    again, not even for another space.
    """
    results = evaluator.results
    paths = output_paths(out, spaces)
    done = set()
    for space, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        for row in resume(path, settings.record(space)):
            done.add((row["id"], row["space"]))
            remember(results, row)
    by_id = {e.id: e for e in examples}
    jobs = [
        Job(space=space, question_id=e.id, search=question_search(settings, space, e.id))
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
        row = make_row(
            by_id[job.question_id],
            job.space,
            job.search,
            results[job.question_id],
            settings.record(job.space),
            run or {},
        )
        append_row(paths[job.space], row)
        bar.update(1)

    def show(progress: Progress) -> None:
        bar.set_postfix(
            sims_per_s=f"{progress.rate():.1f}",
            evals=progress.evaluations,
            valid=progress.valid_found,
        )

    cache = {(q, p): float(g["strict"]) for q, graded in results.items() for p, g in graded.items()}
    progress = run_jobs(jobs, evaluator, finish, max_active=max_active, cache=cache, on_round=show)
    bar.close()
    return progress


def question_search(settings: SearchSettings, space: str, question_id: str) -> QuestionSearch:
    """The MCTS of one question in one space, rooted at the identity and seeded by the run's
    seed, the space and the question (so its tree never depends on the other questions)."""
    return QuestionSearch(
        settings.space(space),
        settings.mcts,
        identity(settings.depth),
        f"{settings.seed}/{space}/{question_id}",
    )


def remember(results: Results, row: dict[str, Any]) -> None:
    """Put a stored row's graded evaluations into ``results``."""
    graded = results.setdefault(row["id"], {})
    for program, evaluation in zip(evaluated_programs(row), row["evaluations"]):
        graded.setdefault(program, {k: evaluation[k] for k in GRADED_KEYS if k in evaluation})


def write_stats(out: Path, spaces: Sequence[str], settings: SearchSettings, folder: Path) -> dict:
    """``search_stats.json``, its tables (``search_stats.md``) and the plots in ``folder``, from
    the rows in the output files (and the controls and recheck files beside them, if any)."""
    from polar.search.plots import write_plots
    from polar.search.stats import search_stats
    from polar.search.tables import markdown

    rows = {space: read_rows(path) for space, path in output_paths(out, spaces).items()}
    budgets = range(settings.min_steps, settings.max_steps + 1)
    recheck = recheck_path(out)
    stats = search_stats(
        rows,
        settings.depth,
        budgets,
        controls=read_controls(out),
        recheck=json.loads(recheck.read_text()) if recheck.is_file() else None,
    )
    stats["settings"] = asdict(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "search_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    (folder / "search_stats.md").write_text(markdown(stats))
    write_plots(stats, folder)
    return stats


def recheck_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.recheck.json")


def recheck(
    llm,
    examples: Sequence[Example],
    rows: Sequence[dict[str, Any]],
    sample: int,
    seed: int,
    run: dict[str, Any],
) -> dict[str, Any]:
    """Re-evaluate ``sample`` stored (question, program) pairs, drawn at random from ``rows``,
    in one fresh batch, and count how many completions, answers and rewards agree.

    ``run`` (commit and engine of this re-evaluation) is recorded beside how many of the drawn
    pairs each code version wrote."""
    from polar.search.engine import EngineEvaluator

    stored, written_at = {}, {}
    for row in rows:
        for program, evaluation in zip(evaluated_programs(row), row["evaluations"]):
            stored[(row["id"], program)] = evaluation
            written_at[(row["id"], program)] = row.get("run", {}).get("commit", "unknown")
    keys = sorted(stored, key=lambda pair: (pair[0], pair[1]))
    pairs = random.Random(f"{seed}/recheck").sample(keys, min(sample, len(keys)))
    llm.reset_prefix_cache()
    evaluator = EngineEvaluator(llm, [e for e in examples if e.id in {q for q, _ in pairs}])
    evaluator(pairs)
    again = [(stored[pair], evaluator.results[pair[0]][pair[1]]) for pair in pairs]
    differing = [
        {"id": q, "program": format_program(p), "stored": a["completion"], "now": b["completion"]}
        for (q, p), (a, b) in zip(pairs, again)
        if a["completion"] != b["completion"]
    ]
    return {
        "pairs": len(pairs),
        "same_completion": sum(a["completion"] == b["completion"] for a, b in again),
        "same_answer": sum(a["answer"] == b["answer"] for a, b in again),
        "same_reward": sum(a["strict"] == b["strict"] for a, b in again),
        "pairs_by_commit": dict(sorted(Counter(written_at[pair] for pair in pairs).items())),
        "run": run,
        "differing": differing[:20],
    }


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
    controls: bool = True,
    temperatures: Sequence[float] = TEMPERATURES,
    recheck_pairs: int = 0,
    **settings: Any,
) -> dict:
    """Search ``task`` on ``model`` with one PoLar engine; returns the statistics.

    ``slots`` is the engine's S (default ceil(1.25 D)); the step budget defaults to
    ``[D // 2, S]``; ``settings`` are further :class:`SearchSettings` fields. ``controls``
    adds the same-budget controls (:mod:`polar.search.controls`) of every searched question;
    ``recheck_pairs`` > 0 re-evaluates that many stored pairs and writes the agreement.
    """
    from polar.models import resolve
    from polar.search.controls import run_controls
    from polar.search.engine import (
        EngineEvaluator,
        default_slots,
        engine_record,
        model_depth,
        start_engine,
        stop_engine,
    )
    from polar.search.records import code_version

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
        run = {"commit": code_version(), "engine": engine_record(llm)}
        evaluator = EngineEvaluator(llm, examples)
        progress = search_questions(examples, evaluator, budget, out, spaces, max_active, run=run)
        print(
            f"{progress.jobs_done} searches, {progress.simulations} simulations, "
            f"{progress.evaluations} engine evaluations in {progress.seconds:.0f} s "
            f"({progress.rate():.2f} simulations/s)",
            file=sys.stderr,
        )
        rows = {s: read_rows(p) for s, p in output_paths(out, spaces).items()}
        if controls:
            run_controls(examples, evaluator, budget, rows, out, temperatures, run)
        if recheck_pairs > 0:
            agreement = recheck(
                llm,
                examples,
                [r for rs in rows.values() for r in rs],
                recheck_pairs,
                budget.seed,
                run,
            )
            recheck_path(out).write_text(json.dumps(agreement, indent=1) + "\n")
    finally:
        stop_engine(llm)
    return write_stats(out, spaces, budget, stats_dir or out.parent)

"""Output rows: the predictor's supervision JSONL plus everything needed to redo the grading.

One row per (question, space), written as soon as its search finishes::

    {"question": str, "answer": str, "valid_programs": [[int, ...]], "invalid_programs": [...],
     "base_correct": bool,                       # the fields polar.predictor.labels reads
     "id": str, "level": int | null, "space": str, "simulations": int,
     "evaluations": [                            # every distinct program, in search order
        {"program": text form, "simulation": int, "depth": int,
         "completion": str, "answer": str | null, "strict": bool, "lenient": bool}, ...],
     "settings": {...},                          # search settings; a resume must match them
     "run": {"commit": str, "engine": {...}}}    # what produced the row (not matched)

``valid_programs`` are the strictly correct ones (``polar.answers``); the completion text of
every evaluation lets any grading be redone without the model. A run killed mid-write leaves at
most one partial last line; resuming drops it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from polar.search.mcts import QuestionSearch
from polar.tasks import Example
from vllm_polar.program import Program, format_program, parse_program

Graded = dict[str, Any]
"""A graded completion: ``{"completion": str, "answer": str | None, "strict": bool,
"lenient": bool}``."""
GRADED_KEYS = ("completion", "answer", "strict", "lenient")


def make_row(
    example: Example,
    space: str,
    search: QuestionSearch,
    results: dict[Program, Graded],
    settings: dict[str, Any],
    run: dict[str, Any],
) -> dict[str, Any]:
    """The output row of a finished search; ``results`` holds every evaluated program's grades."""
    return {
        "question": example.question,
        "answer": example.answer,
        "valid_programs": [list(p) for p in search.valid_programs()],
        "invalid_programs": [list(p) for p in search.invalid_programs()],
        "base_correct": search.rewards[search.root.program] >= 1.0,
        "id": example.id,
        "level": example.metadata.get("level"),
        "space": space,
        "simulations": search.simulations,
        "evaluations": [
            {
                "program": format_program(e.program),
                "simulation": e.simulation,
                "depth": e.depth,
                **results[e.program],
            }
            for e in search.evaluations
        ],
        "settings": settings,
        "run": run,
    }


def evaluated_programs(row: dict[str, Any]) -> list[Program]:
    """The programs of a row's evaluations, in search order."""
    return [parse_program(e["program"]) for e in row["evaluations"]]


def code_version() -> str:
    """The project's git commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Complete rows of an output file; a partial last line (killed mid-write) is dropped."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON row") from None
    return rows


def resume(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished rows in ``path``, rewriting it without a partial last line.

    Raises ``ValueError`` when the file was produced with other settings.
    """
    rows = read_rows(path)
    for row in rows:
        if row.get("settings") != settings:
            raise ValueError(
                f"{path} holds rows produced with other settings ({row.get('settings')}, now "
                f"{settings}); use another --out or the same settings"
            )
    if rows:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(row) + "\n")
        file.flush()

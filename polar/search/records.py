"""Output rows: the predictor's supervision JSONL plus what the statistics need; resuming.

One row per (question, space), written as soon as its search finishes::

    {"question": str, "answer": str, "valid_programs": [[int, ...]], "invalid_programs": [...],
     "base_correct": bool,                       # the fields polar.predictor.labels reads
     "id": str, "level": int | null, "space": str, "simulations": int,
     "answers": {program text: extracted answer | null},   # every evaluated program
     "settings": {...}}                          # search settings; a resume must match them

A run killed mid-write leaves at most one partial last line; resuming drops it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polar.search.mcts import QuestionSearch
from polar.tasks import Example
from vllm_polar.program import Program, format_program


def make_row(
    example: Example,
    space: str,
    search: QuestionSearch,
    answers: dict[Program, str | None],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The output row of a finished search; ``answers`` maps evaluated programs to answers."""
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
        "answers": {format_program(p): answers.get(p) for p in search.rewards},
        "settings": settings,
    }


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


def resume(path: Path, settings: dict[str, Any]) -> set[tuple[str, str]]:
    """(id, space) of the finished rows in ``path``, rewriting it without a partial last line.

    Raises ``ValueError`` when the file was produced with other settings.
    """
    rows = read_rows(path)
    for row in rows:
        if row.get("settings") != settings:
            raise ValueError(
                f"{path} holds rows searched with other settings ({row.get('settings')}, now "
                f"{settings}); use another --out or the same settings"
            )
    if rows:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {(row["id"], row["space"]) for row in rows}


def append_row(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(row) + "\n")
        file.flush()

"""Supervision data: the JSONL format, the importer for the paper's MCTS files, and targets.

Supervision JSONL, one row per question::

    {"question": str, "answer": str, "valid_programs": [[int, ...], ...],
     "invalid_programs": [[int, ...], ...],   # optional
     "base_correct": bool | null}             # did the full-depth model answer correctly

Targets come from the canonical segment parse (:func:`vllm_polar.program.to_segments`):
programs without a segment form, or with more steps than the budget, are counted and dropped.
The full-depth program gets ``identity_weight`` when a shorter valid program exists for the
same question, and each question's program weights are normalised to sum to 1, so
``boundary_targets`` holds each layer's weighted boundary frequency and ``op_targets`` the
weighted op counts at segment starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from polar.predictor.segments import Op, SegmentForm, to_segments
from vllm_polar.program import Program, ProgramError, identity, validate


@dataclass
class SupervisionRow:
    question: str
    answer: str
    valid_programs: list[Program]
    invalid_programs: list[Program] = field(default_factory=list)
    base_correct: bool | None = None


def write_supervision(rows: Iterable[SupervisionRow], path: Path) -> None:
    with open(path, "w") as file:
        for row in rows:
            file.write(json.dumps(asdict(row)) + "\n")


def read_supervision(path: Path) -> list[SupervisionRow]:
    """Rows of a supervision JSONL file; raises ``ValueError`` naming the bad line."""
    rows = []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                rows.append(parse_row(json.loads(line)))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: bad supervision row: {error}") from error
    return rows


def parse_row(record: dict) -> SupervisionRow:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {record!r}")
    for key in ("question", "answer", "valid_programs"):
        if key not in record:
            raise ValueError(f"missing field {key!r}")
    question, answer = record["question"], record["answer"]
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    base_correct = record.get("base_correct")
    if base_correct is not None and not isinstance(base_correct, bool):
        raise ValueError(f"base_correct must be true, false or null, got {base_correct!r}")
    return SupervisionRow(
        question=question,
        answer=str(answer),
        valid_programs=parse_programs(record["valid_programs"]),
        invalid_programs=parse_programs(record.get("invalid_programs") or []),
        base_correct=base_correct,
    )


def parse_programs(value: list) -> list[Program]:
    """Non-empty lists of non-negative ints; the depth is checked by :func:`build_labels`."""
    if not isinstance(value, list):
        raise ValueError(f"programs must be a list of lists of ints, got {value!r}")
    for program in value:
        if not isinstance(program, list) or not program:
            raise ValueError(f"a program must be a non-empty list of ints, got {program!r}")
        if not all(type(layer) is int and layer >= 0 for layer in program):
            raise ValueError(f"a program must hold non-negative int layers, got {program!r}")
    return [tuple(program) for program in value]


def import_mcts_samples(path: Path) -> list[SupervisionRow]:
    """Rows from the paper's ``merged_mcts_samples.json``.

    Accepts a top-level ``{"samples": [...]}``, a list of samples, or an object whose values are
    samples. Per sample: ``question`` (or ``sample_info.question``), ``gt_ans`` (or
    ``ground_truth`` / ``answer``, also under ``sample_info``), ``final_valid_transitions``,
    optional ``final_invalid_transitions``; ``base_correct`` is ``initial_score >= 0.5`` (or
    ``initial_transition_metric``), null when neither is present.
    """
    with open(path) as file:
        data = json.load(file)
    if isinstance(data, dict):
        samples = data["samples"] if "samples" in data else list(data.values())
    else:
        samples = data
    rows = []
    for number, sample in enumerate(samples):
        try:
            rows.append(row_from_mcts_sample(sample))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: sample {number}: {error!r}") from error
    return rows


def row_from_mcts_sample(sample: dict) -> SupervisionRow:
    info = sample.get("sample_info") or {}
    question = sample.get("question", info.get("question"))
    answer = first_present(
        (sample, "gt_ans"),
        (sample, "ground_truth"),
        (sample, "answer"),
        (info, "ground_truth"),
        (info, "answer"),
    )
    initial = first_present((sample, "initial_score"), (sample, "initial_transition_metric"))
    return parse_row(
        {
            "question": question,
            "answer": "" if answer is None else answer,
            "valid_programs": sample["final_valid_transitions"],
            "invalid_programs": sample.get("final_invalid_transitions") or [],
            "base_correct": None if initial is None else bool(float(initial) >= 0.5),
        }
    )


def first_present(*places: tuple[dict, str]):
    for mapping, key in places:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def segment_targets(form: SegmentForm) -> tuple[torch.Tensor, torch.Tensor]:
    """``boundary [D]`` (0/1) and ``ops [D, 3]`` (one-hot at segment starts, else 0)."""
    boundary = torch.tensor(form.boundaries, dtype=torch.float32)
    ops = torch.zeros(len(form.boundaries), len(Op))
    for (start, _), op in zip(form.segments(), form.ops):
        ops[start, op] = 1.0
    return boundary, ops


def program_weights(
    programs: list[Program], num_layers: int, identity_weight: float
) -> list[float]:
    """Per-question weights summing to 1; the full-depth program gets ``identity_weight``
    (before normalisation) when a shorter program is among ``programs``."""
    full_depth = identity(num_layers)
    shorter_exists = any(len(p) < num_layers for p in programs)
    raw = [identity_weight if p == full_depth and shorter_exists else 1.0 for p in programs]
    total = sum(raw)
    return [w / total for w in raw]


@dataclass
class LabelStats:
    """Training-data summary recorded in the checkpoint."""

    questions: int = 0
    questions_with_labels: int = 0
    base_correct: int = 0
    programs: int = 0
    programs_kept: int = 0
    dropped_no_segment_form: int = 0
    dropped_over_budget: int = 0
    identity_downweighted: int = 0
    max_steps_observed: int = 0
    mean_steps: float = 0.0


@dataclass
class Labels:
    """Targets for the questions that kept at least one program.

    ``boundary_targets [N, D]``, ``op_targets [N, D, 3]``; ``valid_programs[n]`` is the set of
    kept programs of question ``n`` (used to score top-1 predictions).
    """

    questions: list[str]
    boundary_targets: torch.Tensor
    op_targets: torch.Tensor
    valid_programs: list[frozenset[Program]]
    stats: LabelStats


def build_labels(
    rows: list[SupervisionRow],
    num_layers: int,
    identity_weight: float = 0.3,
    max_steps: int | None = None,
) -> Labels:
    """Soft segment-form targets per question (rows with the same question are merged);
    raises ``ProgramError`` on an out-of-range layer (a program for another depth)."""
    programs_of: dict[str, dict[Program, None]] = {}
    base_correct: set[str] = set()
    for row in rows:
        programs_of.setdefault(row.question, {}).update(dict.fromkeys(row.valid_programs))
        if row.base_correct:
            base_correct.add(row.question)
    stats = LabelStats(questions=len(programs_of), base_correct=len(base_correct))
    full_depth = identity(num_layers)
    forms: dict[Program, SegmentForm | None] = {}  # programs recur across questions
    questions, boundaries, ops, valid_sets, steps = [], [], [], [], []
    for question, programs in programs_of.items():
        kept: dict[Program, SegmentForm] = {}
        for program in programs:
            try:
                validate(program, num_layers)
            except ProgramError as error:
                raise ProgramError(f"question {question[:60]!r}: {error}") from error
            stats.programs += 1
            if program not in forms:
                forms[program] = to_segments(program, num_layers)
            form = forms[program]
            if form is None:
                stats.dropped_no_segment_form += 1
            elif max_steps is not None and len(program) > max_steps:
                stats.dropped_over_budget += 1
            else:
                kept[program] = form
        if not kept:
            continue
        weights = program_weights(list(kept), num_layers, identity_weight)
        stats.identity_downweighted += full_depth in kept and min(map(len, kept)) < num_layers
        boundary_target = torch.zeros(num_layers)
        op_target = torch.zeros(num_layers, len(Op))
        for form, weight in zip(kept.values(), weights):
            boundary, op = segment_targets(form)
            boundary_target += weight * boundary
            op_target += weight * op
        questions.append(question)
        boundaries.append(boundary_target)
        ops.append(op_target)
        valid_sets.append(frozenset(kept))
        steps.extend(len(p) for p in kept)
    stats.questions_with_labels = len(questions)
    stats.programs_kept = len(steps)
    if not questions:
        raise ValueError(f"no question has a usable valid program ({stats})")
    stats.max_steps_observed = max(steps)
    stats.mean_steps = round(sum(steps) / len(steps), 3)
    return Labels(questions, torch.stack(boundaries), torch.stack(ops), valid_sets, stats)

"""Tasks: every data set becomes a list of ``Example`` rows of one shape.

``load_task(name_or_path, split)`` is the one entry point. ``name_or_path`` is a registered task
name (``arith``, ``arith-3``, ``mawps``, ``mawps-singleop``, ``asdiv``, ``gsm8k``, ``dart-math``,
``dart-math-2``, ``mmlu-pro``; see ``TASKS``) or a JSONL file whose rows have ``question`` and
``answer`` fields. File-backed tasks read ``<data_dir>/<task>/<split>.jsonl`` (the layout of
the Qwen2.5-Math evaluation data) when ``data_dir`` or ``$VLLM_POLAR_DATA`` is set, a file or hub
id given as ``source``, else their Hugging Face dataset id (needs ``datasets`` and a hub).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from polar.tasks.arith import LEVELS, arith_split
from polar.tasks.benchmarks import (
    MAWPS_SUBSETS,
    load_asdiv,
    load_dart_math,
    load_gsm8k,
    load_jsonl_task,
    load_mawps,
    load_mmlu_pro,
)
from polar.tasks.example import Example

__all__ = ["Example", "TASKS", "load_task", "task_names"]

Loader = Callable[..., list[Example]]


def _registry() -> dict[str, Loader]:
    tasks: dict[str, Loader] = {
        "arith": lambda split, **kw: [e for lv in LEVELS for e in arith_split(lv, split, **kw)],
        "mawps": lambda split, **kw: load_mawps(split=split, **kw),
        "asdiv": lambda split, **kw: load_asdiv(split=split, **kw),
        "gsm8k": lambda split, **kw: load_gsm8k(split=split, **kw),
        "dart-math": lambda split, **kw: load_dart_math(split=split, **kw),
        "mmlu-pro": lambda split, **kw: load_mmlu_pro(split=split, **kw),
    }
    for level in LEVELS:
        tasks[f"arith-{level}"] = lambda split, lv=level, **kw: arith_split(lv, split, **kw)
        tasks[f"dart-math-{level}"] = lambda split, lv=level, **kw: load_dart_math(
            split=split, levels=(lv,), **kw
        )
    for subset in MAWPS_SUBSETS:
        tasks[f"mawps-{subset}"] = lambda split, s=subset, **kw: load_mawps(
            split=split, subsets=(s,), **kw
        )
    return tasks


TASKS: dict[str, Loader] = _registry()
FILE_FREE = {"arith", *(f"arith-{level}" for level in LEVELS)}


def task_names() -> list[str]:
    return sorted(TASKS)


def load_task(
    name_or_path: str,
    split: str = "test",
    limit: int | None = None,
    data_dir: str | Path | None = None,
    **options,
) -> list[Example]:
    """Rows of a registered task, or of a JSONL file with ``question``/``answer`` fields.

    ``limit`` keeps the first rows (the order is fixed for every task). ``data_dir`` (default
    ``$VLLM_POLAR_DATA``) is where the file-backed benchmarks live; ``options`` go to the task's
    loader (``seed`` for ``arith`` and ``dart-math``, ``source`` to point at a file or hub id).
    """
    if name_or_path in TASKS:
        data_dir = data_dir or os.environ.get("VLLM_POLAR_DATA") or None
        if data_dir is not None and "source" not in options and name_or_path not in FILE_FREE:
            options["data_dir"] = Path(data_dir)
        examples = TASKS[name_or_path](split, **options)
    elif Path(name_or_path).is_file():
        examples = load_jsonl_task(Path(name_or_path), **options)
    else:
        raise ValueError(
            f"unknown task {name_or_path!r}: not a file, and not one of {', '.join(task_names())}"
        )
    return examples[:limit] if limit is not None else examples

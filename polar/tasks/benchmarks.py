"""Loaders for the public benchmarks: MAWPS, ASDiv, GSM8K, DART-Math, MMLU-Pro.

Each reads a local file (``.jsonl``, ``.json`` or ``.parquet``), a folder of them, or a Hugging
Face dataset id (through ``datasets``, imported only then), and maps rows to ``Example``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from polar.tasks.example import Example

MAWPS_SUBSETS = ("singleop", "addsub", "singleeq", "multiarith")
DART_MATH_ID = "hkust-nlp/dart-math-pool-math"
MMLU_PRO_ID = "TIGER-Lab/MMLU-Pro"
GSM8K_ID = ("openai/gsm8k", "main")
ASDIV_ID = ("EleutherAI/asdiv", None)
SPLIT_SIZES = {"train": 1250, "val": 250, "test": 500}  # per level, as in the paper
CHOICE_LETTERS = "ABCDEFGHIJ"
ROW_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def read_rows(
    source: str | Path,
    split: str = "test",
    config: str | None = None,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows (dicts) of a local file, every row file under a local folder, or a hub dataset.

    ``split`` and ``config`` apply to hub datasets only; ``columns`` limits what parquet files
    read (large pools stay cheap).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in ROW_FILE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no {'/'.join(ROW_FILE_SUFFIXES)} files under {path}")
        return [row for f in files for row in read_rows(f, columns=columns)]
    if path.is_file():
        return read_file_rows(path, columns)
    if path.is_absolute() or str(source).startswith("."):
        raise FileNotFoundError(f"{source} does not exist")
    return read_hub_rows(str(source), split, config)


def read_file_rows(path: Path, columns: Sequence[str] | None) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from e
        return pq.read_table(path, columns=list(columns) if columns else None).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_hub_rows(dataset_id: str, split: str, config: str | None) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            f"{dataset_id!r} is not a local path; loading it from the Hugging Face hub needs "
            "`pip install datasets` (or pass a local .jsonl/.parquet file)"
        ) from e
    return list(datasets.load_dataset(dataset_id, config, split=split))


def format_number(value: Any) -> str:
    """``14.0`` → ``"14"``, ``2.5`` → ``"2.5"``; strings pass through stripped."""
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value).strip()


def first_field(row: dict[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise KeyError(f"row has none of the fields {list(names)}: {sorted(row)}")


def local_file(data_dir: Path, task: str, stem: str) -> Path:
    path = Path(data_dir) / task / f"{stem}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected <data_dir>/{task}/{stem}.jsonl)")
    return path


def load_mawps(
    split: str = "test",
    subsets: Sequence[str] = MAWPS_SUBSETS,
    data_dir: Path | None = None,
    source: str | Path | None = None,
) -> list[Example]:
    """MAWPS (test only), from ``<data_dir>/mawps/<subset>.jsonl`` or one ``source`` whose rows
    carry a ``type`` field naming the subset (like ``mawps/test.jsonl``)."""
    unknown = set(subsets) - set(MAWPS_SUBSETS)
    if unknown:
        raise ValueError(f"unknown MAWPS subsets {sorted(unknown)}; known: {MAWPS_SUBSETS}")
    if data_dir is not None:
        rows = [
            (subset, i, row)
            for subset in subsets
            for i, row in enumerate(read_rows(local_file(data_dir, "mawps", subset)))
        ]
    elif source is not None:
        rows = [(row.get("type"), i, row) for i, row in enumerate(read_rows(source, split))]
        rows = [r for r in rows if r[0] in subsets]
    else:
        raise ValueError("MAWPS has no canonical hub copy: pass data_dir or source")
    return [
        Example(
            id=f"mawps/{subset}/{row.get('idx', i)}",
            question=str(first_field(row, ("input", "question", "Question"))).strip(),
            answer=format_number(first_field(row, ("target", "answer", "result", "Answer"))),
            metadata={"subset": subset},
        )
        for subset, i, row in rows
    ]


def asdiv_answer(raw: str) -> str:
    """``"9 (apples)"`` → ``"9"``: the value without its unit in parentheses."""
    return re.sub(r"\s*\([^()]*\)\s*$", "", str(raw)).strip()


def is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", text.replace(",", "")) is not None


def load_asdiv(
    split: str = "test",
    data_dir: Path | None = None,
    source: str | Path | None = None,
    numeric_only: bool = True,
) -> list[Example]:
    """ASDiv: question = body + question; answer without its unit.

    ``numeric_only`` drops the rows whose answer is not one number (names, yes/no, clock times,
    ratios, several values), which a numeric checker cannot grade.
    """
    if data_dir is not None:
        rows = read_rows(local_file(data_dir, "asdiv", split))
    else:
        rows = read_rows(source or ASDIV_ID[0], split, ASDIV_ID[1] if source is None else None)
    examples = []
    for i, row in enumerate(rows):
        answer = asdiv_answer(first_field(row, ("answer", "Answer")))
        if numeric_only and not is_number(answer):
            continue
        body = str(row.get("body", "")).strip()
        question = str(first_field(row, ("question", "Question"))).strip()
        examples.append(
            Example(
                id=f"asdiv/{row.get('idx', i)}",
                question=f"{body} {question}".strip(),
                answer=answer.replace(",", ""),
                metadata={"solution_type": row.get("solution_type")},
            )
        )
    return examples


def gsm8k_answer(solution: str) -> str:
    """The final answer after ``####`` in a GSM8K solution, without thousands commas."""
    return solution.split("####")[-1].strip().replace(",", "")


def load_gsm8k(
    split: str = "test",
    data_dir: Path | None = None,
    source: str | Path | None = None,
) -> list[Example]:
    if data_dir is not None:
        rows = read_rows(local_file(data_dir, "gsm8k", split))
    else:
        rows = read_rows(source or GSM8K_ID[0], split, GSM8K_ID[1] if source is None else None)
    return [
        Example(
            id=f"gsm8k/{split}/{row.get('idx', i)}",
            question=str(row["question"]).strip(),
            answer=gsm8k_answer(str(row["answer"])),
            metadata={"solution": row["answer"]},
        )
        for i, row in enumerate(rows)
    ]


def dart_level(metadata: Any) -> int | None:
    """``query_metadata.level`` as an int (the pool stores ints; MATH writes "Level 3")."""
    level = metadata.get("level") if isinstance(metadata, dict) else None
    if isinstance(level, str):
        digits = re.findall(r"\d+", level)
        return int(digits[0]) if digits else None
    return int(level) if level is not None else None


def stable_key(seed: int, text: str) -> str:
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()


def split_slice(split: str, available: int) -> slice:
    """Where ``split`` lies in a level's shuffled queries: 1250/250/500, scaled down together
    when the level has fewer than 2000 distinct queries so that splits stay disjoint."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLIT_SIZES)}")
    scale = min(1.0, available / sum(SPLIT_SIZES.values()))
    sizes = {s: int(n * scale) for s, n in SPLIT_SIZES.items()}
    start = sum(sizes[s] for s in list(SPLIT_SIZES)[: list(SPLIT_SIZES).index(split)])
    return slice(start, start + sizes[split])


def load_dart_math(
    split: str = "test",
    levels: Sequence[int] = (1, 2, 3, 4, 5),
    source: str | Path = DART_MATH_ID,
    data_dir: Path | None = None,
    seed: int = 0,
) -> list[Example]:
    """DART-Math pool queries by level (``query_metadata.level``), split per level 1250/250/500.

    The pool repeats each query once per sampled response: queries are deduplicated first, then
    ordered by a seeded hash of their text, so the split does not depend on file or row order.
    ``source`` is the hub id, a parquet/jsonl file, or a folder of shards; ``data_dir`` looks in
    ``<data_dir>/dart-math``.
    """
    if data_dir is not None:
        source = Path(data_dir) / "dart-math"
    rows = read_rows(source, "train", columns=("query", "gt_ans", "query_metadata"))
    by_level: dict[int, dict[str, str]] = {level: {} for level in levels}
    for row in rows:
        level = dart_level(row.get("query_metadata"))
        if level in by_level:
            by_level[level].setdefault(str(row["query"]).strip(), str(row["gt_ans"]).strip())
    examples = []
    for level in levels:
        queries = sorted(by_level[level], key=lambda q: stable_key(seed, q))
        for query in queries[split_slice(split, len(queries))]:
            examples.append(
                Example(
                    id=f"dart-math/L{level}/{stable_key(0, query)[:12]}",
                    question=query,
                    answer=by_level[level][query],
                    metadata={"level": level, "split": split},
                )
            )
    return examples


def format_choices(question: str, options: Sequence[str]) -> str:
    """The question followed by one ``"A. option"`` line per option."""
    lines = [f"{CHOICE_LETTERS[i]}. {str(option).strip()}" for i, option in enumerate(options)]
    return question.strip() + "\n" + "\n".join(lines)


def load_mmlu_pro(
    split: str = "test",
    source: str | Path = MMLU_PRO_ID,
    data_dir: Path | None = None,
    categories: Sequence[str] | None = None,
) -> list[Example]:
    """MMLU-Pro: options rendered as lettered lines in the question; the answer is the letter."""
    if data_dir is not None:
        source = Path(data_dir) / "mmlu-pro" / f"{split}.jsonl"
    rows = read_rows(source, "validation" if split == "val" else split)
    examples = []
    for i, row in enumerate(rows):
        if categories is not None and row.get("category") not in categories:
            continue
        options = list(row["options"])
        answer = str(row.get("answer") or CHOICE_LETTERS[int(row["answer_index"])]).strip()
        examples.append(
            Example(
                id=f"mmlu-pro/{row.get('question_id', i)}",
                question=format_choices(str(row["question"]), options),
                answer=answer,
                metadata={"category": row.get("category"), "options": options},
            )
        )
    return examples


def load_jsonl_task(
    path: Path, question_field: str = "question", answer_field: str = "answer"
) -> list[Example]:
    """Any JSONL (or parquet) file with a question and an answer field; other fields → metadata."""
    examples = []
    for i, row in enumerate(read_rows(path)):
        metadata = {k: v for k, v in row.items() if k not in (question_field, answer_field)}
        examples.append(
            Example(
                id=f"{path.stem}/{row.get('id', i)}",
                question=str(row[question_field]).strip(),
                answer=format_number(row[answer_field]),
                metadata=metadata,
            )
        )
    return examples

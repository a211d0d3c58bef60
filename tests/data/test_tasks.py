"""Task loaders on the shared benchmark copies, DART-Math/MMLU-Pro files, and the arith levels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polar.answers import is_correct
from polar.tasks import Example, load_task, task_names
from polar.tasks.arith import LEVELS, SPLITS, arith_level, arith_split


def check_rows(examples: list[Example]) -> None:
    assert all(isinstance(e, Example) for e in examples)
    assert all(e.question.strip() and e.answer.strip() for e in examples)
    assert len({e.id for e in examples}) == len(examples), "ids must be unique"


@pytest.mark.parametrize(
    ("task", "rows"),
    [
        ("mawps-singleop", 562),
        ("mawps-addsub", 395),
        ("mawps-singleeq", 508),
        ("mawps-multiarith", 600),
        ("mawps", 2065),
        ("asdiv", 2084),  # 2215 rows, 131 of them with a non-numeric answer
        ("gsm8k", 1319),
    ],
)
def test_benchmark_row_counts(shared_data: Path, task: str, rows: int) -> None:
    examples = load_task(task, data_dir=shared_data)
    assert len(examples) == rows
    check_rows(examples)
    assert load_task(task, data_dir=shared_data, limit=5) == examples[:5]


def test_benchmark_fields(shared_data: Path) -> None:
    first = load_task("mawps-singleop", data_dir=shared_data)[0]
    assert first.id == "mawps/singleop/0" and first.answer == "14"
    assert first.metadata == {"subset": "singleop"}
    assert {e.metadata["subset"] for e in load_task("mawps", data_dir=shared_data)} == {
        "singleop",
        "addsub",
        "singleeq",
        "multiarith",
    }
    asdiv = load_task("asdiv", data_dir=shared_data)[0]
    assert asdiv.answer == "9" and asdiv.question.startswith("Seven red apples")
    assert asdiv.question.endswith("How many apples are in the basket?")
    all_asdiv = load_task("asdiv", data_dir=shared_data, numeric_only=False)
    assert len(all_asdiv) == 2215
    gsm = load_task("gsm8k", data_dir=shared_data)[0]
    assert gsm.answer == "18" and "Janet" in gsm.question
    assert all("," not in e.answer for e in load_task("gsm8k", data_dir=shared_data))


def test_mawps_from_one_file_with_types(shared_data: Path) -> None:
    examples = load_task("mawps-addsub", source=shared_data / "mawps" / "test.jsonl")
    assert len(examples) == 395 and {e.metadata["subset"] for e in examples} == {"addsub"}


def test_jsonl_path_task(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [{"question": "1+1?", "answer": 2, "level": 1}, {"question": "2*3?", "answer": "6"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    examples = load_task(str(path))
    assert [(e.id, e.question, e.answer) for e in examples] == [
        ("mine/0", "1+1?", "2"),
        ("mine/1", "2*3?", "6"),
    ]
    assert examples[0].metadata == {"level": 1}


def test_unknown_task_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        load_task("no-such-task")
    assert {"arith", "arith-5", "mawps-addsub", "dart-math-3", "mmlu-pro"} <= set(task_names())


def write_dart_pool(path: Path, per_level: dict[int, int], responses: int = 2) -> None:
    """A parquet file shaped like the DART-Math pool: each query repeated once per response."""
    rows = [
        {
            "query": f"Level {level} problem {i}: compute {i} + {level}.",
            "response": f"response {r}",
            "gt_ans": str(i + level),
            "query_metadata": {"level": level, "type": "Algebra"},
        }
        for level, count in per_level.items()
        for i in range(count)
        for r in range(responses)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_dart_math_levels_and_splits(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    write_dart_pool(pool / "train-00000-of-00002.parquet", {1: 2100, 2: 400})
    write_dart_pool(pool / "train-00001-of-00002.parquet", {3: 30})
    splits = {s: load_task("dart-math-1", s, source=str(pool)) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [1250, 250, 500]
    ids = [{e.id for e in rows} for rows in splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    example = splits["test"][0]
    assert example.metadata == {"level": 1, "split": "test"}
    assert is_correct(f"\\boxed{{{example.answer}}}", example.answer)
    # a level with fewer than 2000 distinct queries is split in the same proportions
    small = [len(load_task("dart-math-2", s, source=str(pool))) for s in ("train", "val", "test")]
    assert small == [250, 50, 100]
    # the split depends on the seed, not on file order
    reseeded = load_task("dart-math-1", "test", source=str(pool), seed=1)
    assert {e.id for e in reseeded} != ids[2]
    everything = load_task("dart-math", "test", source=str(pool))
    assert {e.metadata["level"] for e in everything} == {1, 2, 3}


def test_mmlu_pro_letters_and_categories(tmp_path: Path) -> None:
    rows = [
        {
            "question_id": 70 + i,
            "question": f"Which value is {i}?",
            "options": [str(v) for v in range(10)],
            "answer": "ABCDEFGHIJ"[i],
            "answer_index": i,
            "cot_content": "",
            "category": "math" if i % 2 else "law",
            "src": "ori_mmlu",
        }
        for i in range(6)
    ]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    examples = load_task("mmlu-pro", source=str(path))
    assert [e.answer for e in examples] == list("ABCDEF")
    assert examples[3].id == "mmlu-pro/73"
    assert examples[3].question.splitlines()[0] == "Which value is 3?"
    assert examples[3].question.splitlines()[4] == "D. 3"
    assert examples[3].metadata["category"] == "math"
    assert len(load_task("mmlu-pro", source=str(path), categories=["law"])) == 3
    assert is_correct("The answer is (D).", examples[3].answer)


def test_arith_is_deterministic_by_seed() -> None:
    again = [e.question for e in arith_split(3, "test", seed=0)]
    arith_level.cache_clear()
    assert [e.question for e in arith_split(3, "test", seed=0)] == again
    assert [e.question for e in arith_split(3, "test", seed=1)] != again
    assert load_task("arith-3", "test") == arith_split(3, "test")


@pytest.mark.parametrize("level", LEVELS)
def test_arith_splits_are_sized_and_signatures_unique(level: int) -> None:
    splits = {s: arith_split(level, s) for s in SPLITS}
    assert {s: len(rows) for s, rows in splits.items()} == {"train": 500, "val": 100, "test": 200}
    signatures = [e.metadata["signature"] for rows in splits.values() for e in rows]
    assert len(set(signatures)) == 800, "every problem of a level has its own arithmetic"
    for rows in splits.values():
        check_rows(rows)
        assert all(e.metadata["level"] == level and int(e.answer) >= 0 for e in rows)


def chain_of(signature: str) -> tuple[int, list[tuple[str, int]]]:
    """Start and (operation, operand) steps of a signature such as ``"12*4-9"``."""
    start, *rest = re.split(r"([-+*/])", signature)
    return int(start), [(op, int(n)) for op, n in zip(rest[::2], rest[1::2])]


@pytest.mark.parametrize("seed", [0, 1])
def test_arith_gold_never_appears_in_the_question(seed: int) -> None:
    for level in LEVELS:
        for example in arith_level(level, seed):
            numbers = re.findall(r"\d+", example.question)
            assert example.answer not in numbers, (example.id, example.question)


@pytest.mark.parametrize("seed", [0, 1])
def test_arith_splits_are_disjoint_by_arithmetic(seed: int) -> None:
    """Over all levels together: no signature (numbers and operations) is in two splits, and
    each signature is the question's own arithmetic: its numbers stand in the question in
    order and evaluate to the gold answer."""
    by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
    for level in LEVELS:
        for example in arith_level(level, seed):
            signature = example.metadata["signature"]
            by_split[example.metadata["split"]].add(signature)
            value, steps = chain_of(signature)
            numbers = [int(n) for n in re.findall(r"\d+", example.question)]
            chain = [value, *(n for _, n in steps)]
            positions = iter(range(len(numbers)))
            assert all(any(numbers[i] == n for i in positions) for n in chain), example.question
            for op, n in steps:
                value = {"+": value + n, "-": value - n, "*": value * n, "/": value // n}[op]
            assert str(value) == example.answer
    train, val, test = (by_split[s] for s in SPLITS)
    assert not (train & val) and not (train & test) and not (val & test)


def test_arith_split_of_a_signature_does_not_depend_on_level_or_seed() -> None:
    seen: dict[str, str] = {}
    for seed in (0, 1):
        for level in LEVELS:
            for example in arith_level(level, seed):
                split = seen.setdefault(example.metadata["signature"], example.metadata["split"])
                assert split == example.metadata["split"]


def test_arith_levels_grow_in_steps() -> None:
    mean_ops = [
        sum(len(e.metadata["ops"]) for e in arith_split(level, "train")) / 500 for level in LEVELS
    ]
    assert mean_ops == sorted(mean_ops)
    assert len(load_task("arith", "val")) == 100 * len(LEVELS)

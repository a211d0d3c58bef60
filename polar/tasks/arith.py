"""``arith``: procedural arithmetic word problems in five difficulty levels, no files needed.

A problem is a story about one person's stock of items: a start amount, then a chain of
operations (gets more, gives some away, multiplies, splits into equal piles), optionally with
distractor sentences holding numbers that do not matter; the question asks for the final
amount, always a non-negative integer. Levels grow the chain, the numbers and the operation mix.

Two properties make the task usable for research (both pinned by the tests, over every level):

- **No leaks.** The gold answer never appears as a number in the question (a problem whose
  answer equals its start, an operand or a distractor is drawn again).
- **Splits disjoint by arithmetic.** A problem's *signature* is its chain of numbers and
  operations (``"37+5"``, ``"12*4-9"``), whatever its names, items, templates and distractors.
  A hash of the signature alone puts it in ``train``, ``val`` or ``test`` (62.5 / 12.5 / 25 %),
  so no two splits share a computation, at any level or seed; within a level every signature
  appears once.

Each level is one seeded stream of problems; each split keeps the first ``SIZES[split]``
problems the stream gives it (500 train, 100 val, 200 test per level), so the same seed gives
the same rows on every machine.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import cache

from polar.tasks.example import Example

LEVELS = (1, 2, 3, 4, 5)
SIZES = {"train": 500, "val": 100, "test": 200}
SPLITS = tuple(SIZES)
SPLIT_BOUNDS = (("train", 0.625), ("val", 0.75), ("test", 1.0))
"""Upper bounds of each split's share of the signature hash space."""
MAX_DRAWS = 200_000

NAMES = (
    "Ava", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira",
    "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera",
    "Wes", "Yuki", "Zane",
)  # fmt: skip
ITEMS = (
    "apples", "marbles", "stickers", "pencils", "coins", "stamps", "cookies", "books", "shells",
    "cards", "beads", "balloons", "candies", "buttons", "plums", "toy cars", "eggs", "rocks",
)  # fmt: skip
ADD = (
    "{Name} buys {n} more {items}.",
    "{Friend} gives {Name} {n} {items}.",
    "{Name} finds {n} more {items}.",
    "{Name} wins {n} {items} in a game.",
)
SUB = (
    "{Name} gives {n} {items} to {Friend}.",
    "{Name} loses {n} {items}.",
    "{Name} sells {n} {items}.",
    "{Name} uses {n} {items} for a school project.",
)
MUL = (
    "Then the number of {items} {Name} has is multiplied by {n}.",
    "{Name} then gets enough {items} to have {n} times as many as before.",
)
DIV = (
    "{Name} splits the {items} into {n} equal piles and keeps only one pile.",
    "{Name} shares the {items} equally with friends so that {n} people, {Name} included, get "
    "the same amount, and keeps one share.",
)
DISTRACTOR = (
    "{Friend} has {n} {other}.",
    "{Friend} is {n} years old.",
    "The shop has {n} {other} on a shelf.",
)


@dataclass(frozen=True)
class LevelSpec:
    """How hard a level is: chain length, number ranges, operations, distractors."""

    steps: tuple[int, int]  # inclusive range of the number of operations after the start
    start: tuple[int, int]  # inclusive range of the start amount
    operand: tuple[int, int]  # inclusive range of added/removed amounts
    ops: str  # operations drawn from: "+", "-", "*", "/"
    factor: tuple[int, int] = (2, 5)  # inclusive range for "*" and "/"
    distractors: int = 0


# Ranges are wide enough that every level has well over SIZES' total of distinct signatures
# (level 1: 1,719 leak-free sums and differences; level 3: 1,153 products and quotients).
SPECS = {
    1: LevelSpec(steps=(1, 1), start=(2, 99), operand=(1, 9), ops="+-"),
    2: LevelSpec(steps=(1, 1), start=(20, 99), operand=(11, 60), ops="+-"),
    3: LevelSpec(steps=(1, 1), start=(12, 150), operand=(11, 60), ops="*/", factor=(3, 9)),
    4: LevelSpec(steps=(1, 1), start=(12, 99), operand=(11, 60), ops="+-*/", distractors=2),
    5: LevelSpec(steps=(2, 3), start=(10, 60), operand=(5, 40), ops="+-*/", distractors=1),
}


def sentence(templates: tuple[str, ...], rng: random.Random, **fields: object) -> str:
    return rng.choice(templates).format(**fields)


def next_operation(value: int, spec: LevelSpec, rng: random.Random) -> tuple[str, int]:
    """An operation and operand that keep the amount a non-negative integer below 10,000."""
    ops = list(spec.ops)
    rng.shuffle(ops)
    for op in ops:
        if op == "+":
            return op, rng.randint(*spec.operand)
        if op == "-" and value > spec.operand[0]:
            return op, rng.randint(spec.operand[0], min(spec.operand[1], value - 1))
        if op == "*" and value * spec.factor[0] < 10_000:
            return op, rng.randint(spec.factor[0], min(spec.factor[1], 9_999 // value))
        if op == "/":
            divisors = [d for d in range(spec.factor[0], spec.factor[1] + 1) if value % d == 0]
            if divisors and value > max(divisors):
                return op, rng.choice(divisors)
    return "+", rng.randint(*spec.operand)


def apply(value: int, op: str, n: int) -> int:
    return {"+": value + n, "-": value - n, "*": value * n, "/": value // n}[op]


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    start: int
    chain: tuple[tuple[str, int], ...]  # (operation, operand) in order

    @property
    def signature(self) -> str:
        """The arithmetic alone: ``"37+5"``, ``"12*4-9"`` (no names, items or distractors)."""
        return f"{self.start}" + "".join(f"{op}{n}" for op, n in self.chain)

    def leaks(self) -> bool:
        """Whether the answer appears as a number in the question."""
        return str(self.answer) in NUMBER.findall(self.question)


NUMBER = re.compile(r"\d+")


def make_problem(level: int, rng: random.Random) -> Problem:
    """One problem of ``level``."""
    spec = SPECS[level]
    name, friend = rng.sample(NAMES, 2)
    items, other = rng.sample(ITEMS, 2)
    start = value = rng.randint(*spec.start)
    sentences = [f"{name} has {value} {items}."]
    chain = []
    for _ in range(rng.randint(*spec.steps)):
        op, n = next_operation(value, spec, rng)
        templates = {"+": ADD, "-": SUB, "*": MUL, "/": DIV}[op]
        sentences.append(sentence(templates, rng, Name=name, Friend=friend, items=items, n=n))
        value = apply(value, op, n)
        chain.append((op, n))
    for template in rng.sample(DISTRACTOR, spec.distractors):
        where = rng.randint(1, len(sentences))
        n = rng.randint(*spec.operand)
        sentences.insert(where, template.format(Friend=friend, other=other, n=n))
    sentences.append(f"How many {items} does {name} have now?")
    return Problem(" ".join(sentences), value, start, tuple(chain))


def split_of(signature: str) -> str:
    """The split a signature belongs to, at every level and seed (a hash of it alone)."""
    digest = hashlib.sha256(f"arith:{signature}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    return next(split for split, bound in SPLIT_BOUNDS if share < bound)


@cache
def arith_level(level: int, seed: int = 0) -> tuple[Example, ...]:
    """The problems of ``level`` for ``seed`` in split order: 500 train, 100 val, 200 test."""
    if level not in SPECS:
        raise ValueError(f"arith levels are {LEVELS}, got {level}")
    rng = random.Random(f"arith-{seed}-{level}")
    rows: dict[str, list[Example]] = {split: [] for split in SPLITS}
    seen: set[str] = set()
    for _ in range(MAX_DRAWS):
        if all(len(rows[split]) == size for split, size in SIZES.items()):
            break
        problem = make_problem(level, rng)
        if problem.signature in seen or problem.leaks():
            continue
        seen.add(problem.signature)
        split = split_of(problem.signature)
        if len(rows[split]) < SIZES[split]:
            rows[split].append(example_of(problem, level, split, len(rows[split]), seed))
    else:
        raise RuntimeError(f"arith level {level} ran out of distinct signatures: {SIZES}")
    return tuple(e for split in SPLITS for e in rows[split])


def example_of(problem: Problem, level: int, split: str, index: int, seed: int) -> Example:
    return Example(
        id=f"arith/s{seed}/L{level}/{split}/{index:04d}",
        question=problem.question,
        answer=str(problem.answer),
        metadata={
            "level": level,
            "split": split,
            "ops": "".join(op for op, _ in problem.chain),
            "signature": problem.signature,
            "seed": seed,
        },
    )


def arith_split(level: int, split: str = "test", seed: int = 0) -> list[Example]:
    """The ``split`` rows (500 train / 100 val / 200 test) of ``level``."""
    if split not in SIZES:
        raise ValueError(f"unknown split {split!r}; known: {list(SIZES)}")
    return [e for e in arith_level(level, seed) if e.metadata["split"] == split]

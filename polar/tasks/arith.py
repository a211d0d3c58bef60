"""``arith``: procedural arithmetic word problems in five difficulty levels, no files needed.

A problem is a story about one person's stock of items: a start amount, then a chain of
operations (gets more, gives some away, multiplies, splits into equal piles), optionally with
distractor sentences holding numbers that do not matter; the question asks for the final
amount, always a non-negative integer. Levels grow the chain, the numbers and the operation mix.
They are calibrated on Qwen2.5-Coder-0.5B-Instruct with the direct-answer prompt (greedy, 50
new tokens): see ``benchmarks/README.md``.

Each level is one seeded stream of distinct questions; its first 1250 are ``train``, the next
250 ``val``, the next 500 ``test`` (the paper's per-level split), so splits never share a
question and the same seed gives the same rows on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from polar.tasks.example import Example

LEVELS = (1, 2, 3, 4, 5)
SPLITS = {"train": (0, 1250), "val": (1250, 1500), "test": (1500, 2000)}

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


SPECS = {
    1: LevelSpec(steps=(1, 1), start=(2, 20), operand=(1, 9), ops="+-"),
    2: LevelSpec(steps=(1, 1), start=(20, 99), operand=(11, 60), ops="+-"),
    3: LevelSpec(steps=(1, 1), start=(12, 99), operand=(11, 60), ops="*/", factor=(3, 9)),
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


def make_problem(level: int, rng: random.Random) -> tuple[str, int, list[str]]:
    """One problem of ``level``: (question text, answer, operations in order)."""
    spec = SPECS[level]
    name, friend = rng.sample(NAMES, 2)
    items, other = rng.sample(ITEMS, 2)
    value = rng.randint(*spec.start)
    sentences = [f"{name} has {value} {items}."]
    ops = []
    for _ in range(rng.randint(*spec.steps)):
        op, n = next_operation(value, spec, rng)
        templates = {"+": ADD, "-": SUB, "*": MUL, "/": DIV}[op]
        sentences.append(sentence(templates, rng, Name=name, Friend=friend, items=items, n=n))
        value = apply(value, op, n)
        ops.append(op)
    for template in rng.sample(DISTRACTOR, spec.distractors):
        where = rng.randint(1, len(sentences))
        n = rng.randint(*spec.operand)
        sentences.insert(where, template.format(Friend=friend, other=other, n=n))
    sentences.append(f"How many {items} does {name} have now?")
    return " ".join(sentences), value, ops


@cache
def arith_level(level: int, seed: int = 0) -> tuple[Example, ...]:
    """All 2000 distinct problems of ``level`` for ``seed``, in split order (train, val, test)."""
    if level not in SPECS:
        raise ValueError(f"arith levels are {LEVELS}, got {level}")
    rng = random.Random(f"arith-{seed}-{level}")
    total = max(end for _, end in SPLITS.values())
    seen: set[str] = set()
    examples: list[Example] = []
    while len(examples) < total:
        question, answer, ops = make_problem(level, rng)
        if question in seen:
            continue
        seen.add(question)
        split = next(s for s, (lo, hi) in SPLITS.items() if lo <= len(examples) < hi)
        index = len(examples) - SPLITS[split][0]
        examples.append(
            Example(
                id=f"arith/s{seed}/L{level}/{split}/{index:04d}",
                question=question,
                answer=str(answer),
                metadata={"level": level, "split": split, "ops": "".join(ops), "seed": seed},
            )
        )
    return tuple(examples)


def arith_split(level: int, split: str = "test", seed: int = 0) -> list[Example]:
    """The ``split`` rows (1250 train / 250 val / 500 test) of ``level``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
    lo, hi = SPLITS[split]
    return list(arith_level(level, seed)[lo:hi])

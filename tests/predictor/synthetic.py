"""A synthetic supervision set in which the program is a function of the question.

Each question is about one topic, and each topic has its own program over ``SYNTHETIC_DEPTH``
layers; names and numbers vary, so held-out questions (other names, other numbers) are new
questions of the same kind.
"""

from __future__ import annotations

import random

from polar.predictor.labels import SupervisionRow
from polar.predictor.training import Hyperparameters
from vllm_polar.program import Program, parse_program

SYNTHETIC_DEPTH = 8
TOPIC_PROGRAMS = {
    "apples": parse_program("0-7"),
    "trains": parse_program("0-3,4-7x2"),
    "coins": parse_program("0-1,4-7"),
    "birds": parse_program("0-2x2,3-7"),
    "books": parse_program("0-5"),
    "clocks": parse_program("0,2-3x2,4-7"),
}
TRAIN_NAMES = ["Ava", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivan", "Jade"]
HELD_OUT_NAMES = ["Kai", "Lena", "Milo", "Nora", "Omar"]
TEMPLATES = [
    "{name} has {a} {topic}. A friend gives {name} {b} more {topic}. How many {topic} now?",
    "There are {a} {topic} on the table and {b} {topic} in the box. How many {topic} in all?",
    "If {name} sells {a} {topic} a day for {b} days, how many {topic} are sold?",
    "{name} had {a} {topic} and lost {b} of them. How many {topic} are left?",
]
SYNTHETIC_TRAINING = {
    "grid": [Hyperparameters(lr=3e-3, batch_size=16, epochs=25)],
    "hidden_size": 64,
}
"""Small enough for a shared 2-core CPU (a few seconds), large enough to learn the topics."""


def synthetic_rows(
    per_topic: int,
    names: list[str],
    seed: int,
    topic_programs: dict[str, Program] = TOPIC_PROGRAMS,
) -> list[SupervisionRow]:
    """``per_topic`` distinct questions per topic, each labelled with its topic's program."""
    rng = random.Random(seed)
    rows = []
    for topic, program in topic_programs.items():
        questions: set[str] = set()
        while len(questions) < per_topic:
            template = rng.choice(TEMPLATES)
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            questions.add(template.format(name=rng.choice(names), a=a, b=b, topic=topic))
        rows += [
            SupervisionRow(q, answer="0", valid_programs=[program], base_correct=False)
            for q in sorted(questions)
        ]
    return rows

"""A model-free reward: a planted set of valid programs, and a recording evaluator."""

from __future__ import annotations

from collections.abc import Sequence

from polar.tasks import Example
from vllm_polar.program import Program

DEPTH = 12


def planted(program: Program) -> bool:
    """Valid iff layer 5 is skipped and layer 8 runs at least twice (one skip, one loop)."""
    return 5 not in program and program.count(8) >= 2


def examples(count: int) -> list[Example]:
    return [
        Example(id=f"synthetic/{i}", question=f"q{i}", answer=str(i), metadata={"level": 1 + i % 2})
        for i in range(count)
    ]


class PlantedReward:
    """An evaluator: question ``synthetic/i`` for even i is base-correct (identity valid too);
    every question accepts the planted programs. Records every call; a correct completion
    boxes the question's number, a wrong one boxes -1."""

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.calls: list[list[tuple[str, Program]]] = []
        self.fail_after_calls = fail_after_calls
        self.results: dict[str, dict[Program, dict]] = {}

    def __call__(self, pairs: Sequence[tuple[str, Program]]) -> list[float]:
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise KeyboardInterrupt("interrupted for the test")
        self.calls.append(list(pairs))
        for question, program in pairs:
            answer = question.split("/")[1] if self.valid(question, program) else "-1"
            self.results.setdefault(question, {})[program] = {
                "completion": f"\\boxed{{{answer}}}",
                "answer": answer,
                "strict": self.valid(question, program),
                "lenient": self.valid(question, program),
            }
        return [float(self.valid(q, p)) for q, p in pairs]

    @staticmethod
    def valid(question_id: str, program: Program) -> bool:
        base_correct = int(question_id.split("/")[1]) % 2 == 0
        return planted(program) or (base_correct and program == tuple(range(DEPTH)))

    def sample(self, counts: dict[str, int], temperature: float) -> dict[str, list[dict]]:
        """Base samples: the j-th (from 0) is right iff (j + 1) * temperature >= 2."""
        return {
            question: [
                {"completion": "", "answer": None, "strict": ok, "lenient": ok}
                for ok in ((j + 1) * temperature >= 2 for j in range(count))
            ]
            for question, count in counts.items()
        }

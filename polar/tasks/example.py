"""The one row shape every task produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One question with its gold answer.

    ``id`` is stable across runs and machines (``"<task>/<key>"``); ``answer`` is the gold final
    answer as a string (a number, a LaTeX expression, or a letter for multiple choice);
    ``metadata`` holds task-specific fields such as ``level``, ``subset``, ``split``, ``options``.
    """

    id: str
    question: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

"""Small statistics shared by the search statistics and the evaluation.

- :func:`pass_at` — pass@k of one question from n tries of which c are correct. Tries that are
  exchangeable (samples) use the unbiased estimator ``1 - C(n - c, k) / C(n, k)``; tries that
  are ranked (a predictor's top-k programs) count the first k only (:func:`ranked_pass_at`).
- :func:`wilson` — the 95 % Wilson score interval of a proportion.
- :func:`mcnemar` — the exact two-sided McNemar test of two paired binary outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


def pass_at(n: int, c: int, k: int) -> float:
    """Probability that k tries drawn without replacement from n, c of them correct, hold a
    correct one (Chen et al., 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def ranked_pass_at(correct: Sequence[bool], k: int) -> float:
    """1.0 when one of the first ``k`` ranked tries is correct, else 0.0."""
    return float(any(correct[:k]))


def wilson(successes: float, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / total`` (``successes`` may be a sum of
    per-question probabilities, as for the unbiased pass@k)."""
    if total <= 0:
        raise ValueError("an interval needs at least one observation")
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(a: dict[str, bool], b: dict[str, bool]) -> dict[str, Any]:
    """Paired comparison over the questions of both: ``only_a`` / ``only_b`` count questions
    solved by one side alone; ``p_value`` is the exact two-sided McNemar test (binomial on the
    discordant questions) of "neither side solves more questions than the other"."""
    from scipy.stats import binomtest

    shared = a.keys() & b.keys()
    only_a = sum(a[q] and not b[q] for q in shared)
    only_b = sum(b[q] and not a[q] for q in shared)
    discordant = only_a + only_b
    return {
        "questions": len(shared),
        "only_a": only_a,
        "only_b": only_b,
        "p_value": binomtest(only_a, discordant).pvalue if discordant else 1.0,
    }


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal (``–`` for none), for tables."""
    return "–" if value is None else f"{100 * value:.1f}"

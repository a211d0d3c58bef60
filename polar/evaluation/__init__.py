"""Evaluation: a predictor's programs against the base model and same-budget controls.

``evaluate(EvalSettings(...), out)`` runs every method on one engine and writes the results
(``polar eval`` on the command line); see :mod:`polar.evaluation.run`.
"""

from polar.evaluation.run import METHODS, EvalSettings, evaluate

__all__ = ["METHODS", "EvalSettings", "evaluate"]

"""Program search: MCTS over programs of layers, batched through one PoLar engine.

``search(model, task, out, ...)`` runs it end to end; ``search_questions`` is the same driver with
any ``evaluate(pairs) -> rewards`` callable in place of the engine.
"""

from polar.search.mcts import MCTSConfig, QuestionSearch
from polar.search.run import SearchSettings, search, search_questions, write_stats
from polar.search.space import SPACES, SearchSpace

__all__ = [
    "MCTSConfig",
    "QuestionSearch",
    "SPACES",
    "SearchSettings",
    "SearchSpace",
    "search",
    "search_questions",
    "write_stats",
]

"""PoLar research tooling: models and tasks, predictor, program search, evaluation."""

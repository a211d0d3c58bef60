"""The PoLar predictor: a small network that maps a prompt to its program of layers.

Modules, one concept each: ``network`` (the model), ``encoder`` (frozen sentence-transformers
token embeddings and their disk cache), ``labels`` (supervision JSONL, MCTS importer, targets),
``decoding`` (logits -> top-k programs), ``training`` (loss, schedule, grid, selection),
``fit`` (supervision file -> checkpoint), ``checkpoint`` (save / check / ``load``),
``predictor`` (``Predictor.predict``), ``resolve`` (model names), ``cli`` (``polar train``,
``polar predict``, ``polar import-mcts``).

Serving use::

    from polar.predictor.checkpoint import load
    predictor = load(path, expected_num_layers=D)
    predictor.predict(questions, k=5)  # -> list[list[Candidate]], best first
"""

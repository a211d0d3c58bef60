"""End to end: a supervision JSONL file -> a trained, selected checkpoint directory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from polar.models import cache_root
from polar.predictor.checkpoint import CheckpointConfig, save
from polar.predictor.encoder import TokenEmbeddingCache
from polar.predictor.labels import build_labels, read_supervision
from polar.predictor.network import NetworkConfig, PredictorNetwork
from polar.predictor.resolve import model_id, resolve_model
from polar.predictor.training import Hyperparameters, train
from polar.prompts import predictor_input


def fit(
    data: Path | Sequence[Path],
    encoder: str,
    num_layers: int,
    out: Path,
    *,
    base_model: str | None = None,
    grid: list[Hyperparameters] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    identity_weight: float = 0.3,
    max_steps: int | None = None,
    hidden_size: int = 256,
    num_heads: int = 4,
    num_blocks: int = 2,
    cache_dir: Path | None = None,
) -> CheckpointConfig:
    """Train on ``data`` (one supervision file or several: rows of the same question are
    merged) for a depth-``num_layers`` model and save the selected checkpoint.

    The predictor reads each question as serving will: its direct-answer prompt in
    ``base_model``'s chat template (:func:`polar.prompts.predictor_input`; the bare message
    when no base model is given). ``grid`` defaults to one run with the default
    :class:`Hyperparameters`. ``max_steps`` is the step budget (programs above it are dropped);
    it defaults to the most executed steps among the training programs. Token embeddings are
    cached under ``cache_dir`` (default: ``token_embeddings`` in the ``polar.models`` cache
    root).
    """
    if max_steps is not None and not 1 <= max_steps <= 2 * num_layers:
        raise ValueError(f"max_steps must be in [1, {2 * num_layers}], got {max_steps}")
    files = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    rows = [row for path in files for row in read_supervision(path)]
    labels = build_labels(rows, num_layers, identity_weight, max_steps)
    budget = max_steps or labels.stats.max_steps_observed
    tokenizer = None
    if base_model is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(base_model))
    cache = TokenEmbeddingCache(cache_dir or cache_root() / "token_embeddings", encoder)
    embeddings = cache.get([predictor_input(q, tokenizer) for q in labels.questions])
    network_config = NetworkConfig(
        encoder_dim=embeddings[0].shape[-1],
        num_layers=num_layers,
        hidden_size=hidden_size,
        num_heads=num_heads,
        num_blocks=num_blocks,
    )
    best, runs, baseline = train(
        network_config,
        grid or [Hyperparameters()],
        embeddings,
        labels,
        seed=seed,
        val_fraction=val_fraction,
        max_steps=budget,
    )
    network = PredictorNetwork(network_config)
    network.load_state_dict(best.state_dict)
    config = CheckpointConfig(
        encoder=model_id(encoder),
        network=network_config,
        base_model=None if base_model is None else model_id(base_model),
        max_steps=budget,
        max_steps_observed=labels.stats.max_steps_observed,
        training={
            # relative to the checkpoint, so the record holds wherever the two move together
            "data": [os.path.relpath(path.resolve(), Path(out).resolve()) for path in files],
            "data_sha256": [hashlib.sha256(path.read_bytes()).hexdigest() for path in files],
            "input": "direct-answer prompt"
            + (" in the base model's chat template" if tokenizer is not None else "")
            + ", special tokens removed",
            "labels": asdict(labels.stats),
            "identity_weight": identity_weight,
            "seed": seed,
            "val_fraction": val_fraction,
            "selected": best.summary(),
            "grid": [run.summary() for run in runs],
            "majority_baseline": baseline,
            "beats_majority": best.evaluation.top1 > baseline["top1"],
        },
    )
    save(out, network, config)
    return config

"""Model names as checkpoints record them and as loaders need them."""

from __future__ import annotations

from pathlib import Path

from polar.models import resolve


def model_id(name_or_path: str) -> str:
    """What a checkpoint records: an existing local path made absolute, else the name."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def resolve_model(name_or_path: str) -> str:
    """A loadable path or id (a prepared short name becomes its folder)."""
    return resolve(model_id(name_or_path))


def model_depth(name_or_path: str) -> int:
    """Decoder depth ``num_hidden_layers`` of a causal LM, read from its config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(name_or_path))
    return int(config.get_text_config().num_hidden_layers)

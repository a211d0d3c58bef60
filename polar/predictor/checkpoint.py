"""Predictor checkpoints: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` (flat)::

    format, version          "polar-predictor", 1
    encoder, encoder_dim     sentence-transformers name or path, token-embedding size E
    num_layers               D, the depth of the base model the programs are for
    hidden_size, num_heads, num_blocks, dropout    network shape
    k_max                    longest segment (must equal vllm_polar.program.K_MAX)
    base_model               the model it was trained for, or null
    max_steps                step budget of its programs: the serving slot count S
    max_steps_observed       most executed steps among the training programs
    num_parameters           trainable parameters
    training                 training-data summary, selected hyper-parameters, grid results

:func:`load` checks all of it and raises :class:`CheckpointError` naming the mismatch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from polar.predictor.encoder import encode_tokens, load_encoder
from polar.predictor.network import NetworkConfig, PredictorNetwork, count_parameters
from polar.predictor.predictor import Predictor
from polar.predictor.segments import K_MAX

FORMAT = "polar-predictor"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A predictor checkpoint is missing, corrupt or does not fit; the message says what."""


@dataclass(frozen=True)
class CheckpointConfig:
    encoder: str
    network: NetworkConfig
    base_model: str | None
    max_steps: int
    max_steps_observed: int
    training: dict
    k_max: int = K_MAX

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "encoder": self.encoder,
            **asdict(self.network),
            "k_max": self.k_max,
            "base_model": self.base_model,
            "max_steps": self.max_steps,
            "max_steps_observed": self.max_steps_observed,
            "num_parameters": count_parameters(self.network),
            "training": self.training,
        }


def save(directory: Path, network: PredictorNetwork, config: CheckpointConfig) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in network.state_dict().items()}
    save_file(state, directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n")


def require(data: dict, key: str, kind: type | tuple, where: Path):
    if key not in data:
        raise CheckpointError(f"{where}: missing key {key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CheckpointError(f"{where}: {key!r} has the wrong type: {value!r}")
    return value


def parse_config(data: dict, where: Path) -> CheckpointConfig:
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(
            f"{where}: not a {FORMAT} v{VERSION} config "
            f"(format {data.get('format')!r}, version {data.get('version')!r})"
        )
    shape = {
        f.name: require(data, f.name, (int, float) if f.name == "dropout" else int, where)
        for f in fields(NetworkConfig)
    }
    try:
        network = NetworkConfig(**shape)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from error
    k_max = require(data, "k_max", int, where)
    if k_max != K_MAX:
        raise CheckpointError(f"{where}: K_max {k_max} vs {K_MAX} (polar.predictor.segments.K_MAX)")
    max_steps = require(data, "max_steps", int, where)
    if not 1 <= max_steps <= 2 * network.num_layers:
        raise CheckpointError(
            f"{where}: max_steps {max_steps} is outside [1, {2 * network.num_layers}] "
            f"for depth {network.num_layers}"
        )
    return CheckpointConfig(
        encoder=require(data, "encoder", str, where),
        network=network,
        base_model=require(data, "base_model", (str, type(None)), where),
        max_steps=max_steps,
        max_steps_observed=require(data, "max_steps_observed", int, where),
        training=require(data, "training", dict, where),
        k_max=k_max,
    )


def read_config(directory: Path) -> CheckpointConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: missing {CONFIG_FILE} (not a predictor checkpoint)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return parse_config(data, path)


def read_weights(directory: Path, network: PredictorNetwork) -> dict[str, torch.Tensor]:
    """The state dict in ``model.safetensors``, checked against ``network``'s names and shapes."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS_FILE}")
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors file ({error})") from error
    expected = network.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(state[name].shape)} vs "
                f"{tuple(tensor.shape)} from {CONFIG_FILE}"
            )
    return state


def load(
    directory: Path,
    expected_num_layers: int | None = None,
    num_slots: int | None = None,
    encoder: str | None = None,
    device: str = "cpu",
) -> Predictor:
    """Load and check a checkpoint.

    ``expected_num_layers``: depth of the model it will serve. ``num_slots``: the engine's slot
    count, when fewer than the checkpoint's step budget (decoding is capped at it).
    ``encoder``: a name or path overriding the recorded encoder (e.g. a local copy).
    """
    directory = Path(directory)
    config = read_config(directory)
    depth = config.network.num_layers
    if expected_num_layers is not None and expected_num_layers != depth:
        raise CheckpointError(
            f"{directory}: predictor trained for depth {depth} but the model has depth "
            f"{expected_num_layers} (depth {depth} vs {expected_num_layers})"
        )
    if num_slots is not None and num_slots < 1:
        raise CheckpointError(f"num_slots must be >= 1, got {num_slots}")
    network = PredictorNetwork(config.network)
    network.load_state_dict(read_weights(directory, network))
    sentence_encoder = load_checked_encoder(encoder or config.encoder, config, directory, device)
    max_steps = config.max_steps if num_slots is None else min(config.max_steps, num_slots)
    return Predictor(network.to(device), sentence_encoder, config, max_steps)


def load_checked_encoder(
    name_or_path: str, config: CheckpointConfig, directory: Path, device: str
) -> SentenceTransformer:
    try:
        encoder = load_encoder(name_or_path, device)
    except Exception as error:
        raise CheckpointError(
            f"{directory}: cannot load encoder {name_or_path!r} ({error}); "
            "pass encoder= a local copy"
        ) from error
    dim = encode_tokens(encoder, ["probe"])[0].shape[-1]
    if dim != config.network.encoder_dim:
        raise CheckpointError(
            f"{directory}: encoder {name_or_path!r} gives {dim}-d token embeddings vs "
            f"encoder_dim {config.network.encoder_dim} in {CONFIG_FILE}"
        )
    return encoder

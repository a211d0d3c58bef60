"""PolarConfig: how PoLar is switched on for one engine.

Users enable PoLar with ``additional_config={"polar": {...}}`` (offline) or
``--additional-config '{"polar": {...}}'`` (server).  The dict accepts:

``max_steps``  slot count S: the longest program the engine can run.  Each slot is a KV-cache
               group of its own drawing pages from one pool, and a request holds pages only
               in the slots its program uses, so S costs no KV memory; it costs a block table
               and an attention-metadata build per slot per step, and vLLM refuses to start
               unless the pool holds one request of ``max_model_len`` tokens at S steps.
               Must be >= D so that the identity program always fits.  Default:
               ``ceil(1.25 * D)``, or with a predictor the larger of D and the checkpoint's
               step budget.
``predictor``  path of a predictor checkpoint (``polar train``): requests without a program
               get the predictor's top-1 program (top-k for ``n = k``).  Its depth must be D.
``predictor_timeout_s``  longest a request waits for its prediction before it runs the
               identity program instead (logged and counted).  Default: 10.

:func:`resolve` normalises the dict in place (adding ``num_layers``) so that every process,
front end and workers alike, reads the same values from ``vllm_config.additional_config``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEY = "polar"
"""Key of the PoLar settings inside ``additional_config``."""

OPTIONS = ("max_steps", "num_layers", "predictor", "predictor_timeout_s")
DEFAULT_PREDICTOR_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PolarConfig:
    num_layers: int
    """Depth D of the served model."""
    max_steps: int
    """Slot count S: KV-cache slots, the longest program the engine runs."""
    predictor: str | None = None
    """Predictor checkpoint directory, or None."""
    predictor_timeout_s: float = DEFAULT_PREDICTOR_TIMEOUT_S
    """Longest wait for a prediction before the request runs the identity program."""


def default_max_steps(num_layers: int) -> int:
    return math.ceil(1.25 * num_layers)


def resolve(additional_config: dict[str, Any], num_layers: int) -> PolarConfig | None:
    """Read and check the ``polar`` section; None when PoLar is off.

    Raises ValueError naming the offending option.  Writes the resolved values back into
    ``additional_config["polar"]``.
    """
    section = additional_config.get(KEY)
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f'additional_config["{KEY}"] must be a dict, got {section!r}')
    unknown = sorted(set(section) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f'unknown additional_config["{KEY}"] option(s) {unknown}; known: {OPTIONS}'
        )
    if section.get("num_layers", num_layers) != num_layers:
        raise ValueError(
            f'additional_config["{KEY}"]["num_layers"] = {section["num_layers"]} but the model '
            f"has {num_layers} layers"
        )
    predictor = section.get("predictor")
    default = default_max_steps(num_layers)
    if predictor is not None:
        default = max(num_layers, predictor_step_budget(predictor, num_layers))
    max_steps = section.get("max_steps", default)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < num_layers:
        raise ValueError(
            f'additional_config["{KEY}"]["max_steps"] must be an int >= the model depth '
            f"{num_layers} (the identity program must fit), got {max_steps!r}"
        )
    timeout = section.get("predictor_timeout_s", DEFAULT_PREDICTOR_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(
            f'additional_config["{KEY}"]["predictor_timeout_s"] must be a number of seconds > 0, '
            f"got {timeout!r}"
        )
    config = PolarConfig(
        num_layers=num_layers,
        max_steps=max_steps,
        predictor=predictor,
        predictor_timeout_s=float(timeout),
    )
    additional_config[KEY] = asdict(config)
    return config


def from_additional_config(additional_config: dict[str, Any] | None) -> PolarConfig | None:
    """The resolved config inside an engine's ``additional_config`` (None when PoLar is off)."""
    section = (additional_config or {}).get(KEY)
    if section is None:
        return None
    return PolarConfig(**section)


def predictor_step_budget(path: str, num_layers: int) -> int:
    """Step budget recorded in a predictor checkpoint; checks it was trained for this depth."""
    from polar.predictor.checkpoint import read_config

    checkpoint = read_config(Path(path))
    if checkpoint.network.num_layers != num_layers:
        raise ValueError(
            f"predictor {path} was trained for depth {checkpoint.network.num_layers} but the "
            f"model has depth {num_layers}"
        )
    return checkpoint.max_steps

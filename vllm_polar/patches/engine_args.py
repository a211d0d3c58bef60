"""Patch ``EngineArgs``: switch the engine to PoLar when asked, and add ``--polar-predictor``.

- ``create_engine_config``: before the config is built, force ``enforce_eager`` (vLLM applies
  it inside ``VllmConfig.__post_init__``); after, check the combination, switch the
  architecture, and load the predictor so a bad checkpoint fails at start.
- ``add_cli_args`` / ``from_cli_args``: ``--polar-predictor CKPT`` is sugar for
  ``--additional-config '{"polar": {"predictor": CKPT}}'`` (merged with any given section).
  vLLM loads general plugins before it adds the engine arguments, so the flag is in place.
"""

from __future__ import annotations

import functools

from vllm.engine.arg_utils import EngineArgs

from vllm_polar import config as polar_config
from vllm_polar.runtime import enable
from vllm_polar.runtime.predictor import sidecar_for


def apply() -> None:
    if getattr(EngineArgs.create_engine_config, "polar_patched", False):
        return
    original_create = EngineArgs.create_engine_config
    original_add = EngineArgs.add_cli_args
    original_from = EngineArgs.from_cli_args.__func__

    @functools.wraps(original_create)
    def create_engine_config(self, *args, **kwargs):
        if enable.wants_polar(self.additional_config):
            self.enforce_eager = True
        vllm_config = original_create(self, *args, **kwargs)
        config = enable.enable(vllm_config)
        if config is not None:
            sidecar_for(config)
        return vllm_config

    @functools.wraps(original_add)
    def add_cli_args(parser, *args, **kwargs):
        parser = original_add(parser, *args, **kwargs)
        group = parser.add_argument_group("PoLar", "Programs of layers (vllm-polar).")
        group.add_argument(
            "--polar-predictor",
            default=None,
            metavar="CKPT",
            help="Predictor checkpoint directory: turns PoLar on; requests without a "
            "polar_program run the predictor's program (top-k for n = k).",
        )
        return parser

    @functools.wraps(original_from)
    def from_cli_args(cls, args):
        engine_args = original_from(cls, args)
        predictor = getattr(args, "polar_predictor", None)
        if predictor is not None:
            additional = dict(engine_args.additional_config or {})
            additional[polar_config.KEY] = {
                **additional.get(polar_config.KEY, {}),
                "predictor": predictor,
            }
            engine_args.additional_config = additional
        return engine_args

    create_engine_config.polar_patched = True
    EngineArgs.create_engine_config = create_engine_config
    EngineArgs.add_cli_args = staticmethod(add_cli_args)
    EngineArgs.from_cli_args = classmethod(from_cli_args)

"""Per-request programs at the front end: default, validation, prefix-cache key."""

from __future__ import annotations

from vllm.exceptions import VLLMValidationError
from vllm.v1.engine import EngineCoreRequest

from vllm_polar.config import PolarConfig
from vllm_polar.program import FIELD, Program, ProgramError, format_program, identity, validate


def cache_salt(program: Program, user_salt: str | None, num_layers: int) -> str | None:
    """Prefix-cache salt that keys cached blocks by program.

    The identity program computes what stock vLLM computes, so it keeps the user's salt as is
    and shares blocks with every other identity request.
    """
    if program == identity(num_layers):
        return user_salt
    tag = f"polar:{format_program(program)}"
    return tag if user_salt is None else f"{user_salt}|{tag}"


def attach_program(request: EngineCoreRequest, config: PolarConfig) -> None:
    """Validate (or default to identity) the request's program and key its cache by it.

    Raises VLLMValidationError (HTTP 400 on the server) naming ``polar_program`` and the limit.
    """
    params = request.sampling_params
    if params is None:
        return
    extra = dict(params.extra_args or {})
    value = extra.get(FIELD)
    try:
        program = (
            identity(config.num_layers)
            if value is None
            else validate(value, config.num_layers, config.max_steps)
        )
    except ProgramError as error:
        raise VLLMValidationError(str(error), parameter=FIELD, value=value) from error
    extra[FIELD] = list(program)
    params.extra_args = extra
    request.cache_salt = cache_salt(program, request.cache_salt, config.num_layers)


def program_of(extra_args: dict | None, num_layers: int) -> Program:
    """The program a scheduled request runs (the front end has validated it)."""
    value = (extra_args or {}).get(FIELD)
    return identity(num_layers) if value is None else tuple(value)

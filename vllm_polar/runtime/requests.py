"""Per-request programs at the front end: choice, validation, prefix-cache key.

A request's ``extra_args`` may carry:

``polar_program``   a list of layer indices (the program to run), or ``"identity"`` (run the
                    stock depth, bypassing the predictor);
``polar_programs``  the predictor's top-k programs for ``n = k`` (set by the front end: child
                    i of the request runs program i).

Without either, the predictor (when the engine has one) or else the identity chooses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from vllm.exceptions import VLLMValidationError
from vllm.logger import init_logger
from vllm.sampling_params import SamplingParams
from vllm.v1.engine import EngineCoreRequest

from vllm_polar import metrics
from vllm_polar.config import PolarConfig
from vllm_polar.program import (
    FIELD,
    Program,
    ProgramError,
    format_program,
    identity,
    num_unique_layers,
    validate,
)

logger = init_logger("vllm.polar")

IDENTITY = "identity"
"""``polar_program`` value that asks for the identity program (and skips the predictor)."""
CHILD_PROGRAMS = "polar_programs"


SALT_NAMESPACE = "\x1fpolar\x1f"
"""Prefix of every salt PoLar writes.  A user salt that starts with it is escaped, so that no
user salt equals a program's salt."""


def cache_salt(program: Program, user_salt: str | None, num_layers: int) -> str | None:
    """Prefix-cache salt that keys cached blocks by program (and the user's salt).

    The identity program computes what stock vLLM computes, so it keeps the user's salt as is
    and shares blocks with every other identity request.  Any other program's salt is the
    namespace, a digest of the program and the user's salt; the map from (program, user salt)
    to salt is one-to-one.
    """
    if program == identity(num_layers):
        if user_salt is None or not user_salt.startswith(SALT_NAMESPACE):
            return user_salt
        return f"{SALT_NAMESPACE}user:{user_salt}"
    digest = hashlib.sha256(format_program(program).encode()).hexdigest()
    salt = f"{SALT_NAMESPACE}program:{digest}"
    return salt if user_salt is None else f"{salt}:{user_salt}"


def needs_prediction(params: SamplingParams | None) -> bool:
    extra = (params.extra_args if params is not None else None) or {}
    return FIELD not in extra and CHILD_PROGRAMS not in extra


def fill(programs: list[Program], n: int, num_layers: int) -> list[Program]:
    """``n`` programs for ``n`` completions: the given ones in order, then the identity if it
    is not among them, then the best program again."""
    programs = list(programs[:n])
    if len(programs) < n and identity(num_layers) not in programs:
        programs.append(identity(num_layers))
    return programs + [programs[0]] * (n - len(programs))


def choose_programs(
    params: SamplingParams, config: PolarConfig, predict: Callable[[int], list[Program]] | None
) -> list[Program]:
    """The program of each of the request's ``n`` completions, checked.

    ``predict(k)`` returns the predictor's top-k programs for this request's prompt.
    Raises VLLMValidationError (HTTP 400 on the server) naming ``polar_program`` and the limit.
    """
    extra = params.extra_args or {}
    value = extra.get(FIELD)
    try:
        if value == IDENTITY:
            return [identity(config.num_layers)] * params.n
        if value is not None:
            return [validate(value, config.num_layers, config.max_steps)] * params.n
        if CHILD_PROGRAMS in extra:
            chosen = [
                validate(p, config.num_layers, config.max_steps) for p in extra[CHILD_PROGRAMS]
            ]
        elif predict is not None:
            chosen = predict(params.n)
        else:
            return [identity(config.num_layers)] * params.n
    except ProgramError as error:
        raise VLLMValidationError(str(error), parameter=FIELD, value=value) from error
    return fill(chosen, params.n, config.num_layers)


def attach_programs(request: EngineCoreRequest, programs: list[Program]) -> None:
    """Write the chosen programs into the request (cloned params) and record them."""
    params = request.sampling_params
    extra = {k: v for k, v in (params.extra_args or {}).items() if k != CHILD_PROGRAMS}
    extra[FIELD] = list(programs[0])
    if len(set(programs)) > 1:
        extra[CHILD_PROGRAMS] = [list(p) for p in programs]
    params.extra_args = extra
    for program in programs:
        metrics.PROGRAM_STEPS.observe(len(program))
        metrics.PROGRAM_UNIQUE_LAYERS.observe(num_unique_layers(program))
    logger.debug(
        "PoLar request %s runs %s", request.request_id, "; ".join(map(format_program, programs))
    )


def program_of(extra_args: dict | None, num_layers: int) -> Program:
    """The program a scheduled request runs (checked by :func:`checked_program` on arrival)."""
    value = (extra_args or {}).get(FIELD)
    return identity(num_layers) if value is None or value == IDENTITY else tuple(value)


def checked_program(extra_args: dict | None, config: PolarConfig) -> Program:
    """The program of a request arriving at the engine core, checked again there: a request
    can reach the engine core around the front end (an ``EngineCoreRequest`` given to the
    engine directly).  Raises :class:`ProgramError`, which fails that request alone."""
    value = (extra_args or {}).get(FIELD)
    if value is None or value == IDENTITY:
        return identity(config.num_layers)
    return validate(value, config.num_layers, config.max_steps)


def child_programs(extra_args: dict | None) -> list[list[int]] | None:
    """Per-completion programs of an ``n = k`` request, when they differ."""
    return (extra_args or {}).get(CHILD_PROGRAMS)


def prompt_text(prompt: object, token_ids: list[int] | None, tokenizer) -> str:
    """The text the predictor reads, the same wherever a prompt comes from: the prompt's token
    ids (``token_ids``, else the prompt's own, else the tokenized prompt string) decoded without
    special tokens.  A chat request and the completion request of its rendered conversation
    give the same text; training renders its questions the same way
    (``polar.prompts.predictor_input``).  Empty when there is nothing to decode."""
    if token_ids is None and isinstance(prompt, dict):
        token_ids = prompt.get("prompt_token_ids")
    if token_ids is None:
        text = prompt.get("prompt") if isinstance(prompt, dict) else prompt
        if not isinstance(text, str) or tokenizer is None:
            return ""
        token_ids = tokenizer.encode(text)
    return tokenizer.decode(token_ids, skip_special_tokens=True)

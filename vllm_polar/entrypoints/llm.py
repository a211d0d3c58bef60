"""``vllm_polar.LLM``: ``vllm.LLM`` with PoLar on, a predictor, and programs on the outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import vllm
from vllm import RequestOutput, SamplingParams

from vllm_polar import config as polar_config
from vllm_polar import register
from vllm_polar.program import FIELD, Program, format_program
from vllm_polar.runtime import requests
from vllm_polar.runtime.predictor import sidecar_for

register()  # the patches (e.g. greedy n = k) must be in place before params are built


@dataclass(frozen=True)
class RanProgram:
    """The program one completion ran (set as ``CompletionOutput.polar``)."""

    program: Program
    text: str
    steps: int


class LLM(vllm.LLM):
    """A vLLM engine serving programs of layers.

    ``polar_predictor``: predictor checkpoint directory; ``max_steps``: slot count S (see
    :mod:`vllm_polar.config`).  Any ``vllm.LLM`` argument passes through.
    """

    def __init__(
        self,
        model: str,
        *,
        polar_predictor: str | Path | None = None,
        max_steps: int | None = None,
        **kwargs,
    ) -> None:
        additional = dict(kwargs.pop("additional_config", None) or {})
        section = dict(additional.get(polar_config.KEY) or {})
        if polar_predictor is not None:
            section["predictor"] = str(polar_predictor)
        if max_steps is not None:
            section["max_steps"] = max_steps
        additional[polar_config.KEY] = section
        super().__init__(model=model, additional_config=additional, **kwargs)
        self.polar_config = polar_config.from_additional_config(
            self.llm_engine.vllm_config.additional_config
        )
        self.ran_programs: dict[str, list[Program]] = {}
        """Request id -> the programs its completions run, as the input processor attached
        them to the request the engine receives."""
        self.llm_engine.input_processor.polar_programs = self.ran_programs

    def generate(
        self,
        prompts,
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        polar: bool = True,
        programs: Sequence[Sequence[int] | None] | None = None,
        **kwargs,
    ) -> list[RequestOutput]:
        """Generate with programs of layers.

        ``polar=True``: each prompt runs its explicit program (``programs[i]`` or its params'
        ``polar_program``), else the predictor's (top-k for ``n = k``), else the identity.
        ``polar=False``: every prompt runs the stock depth.  Each ``CompletionOutput`` gets a
        ``polar`` attribute (:class:`RanProgram`).
        """
        prompt_list = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
        if programs is not None and len(programs) != len(prompt_list):
            raise ValueError(f"programs has {len(programs)} entries for {len(prompt_list)} prompts")
        params = self._params_per_prompt(sampling_params, len(prompt_list))
        for i, param in enumerate(params):
            if programs is not None and programs[i] is not None:
                param.extra_args = {**(param.extra_args or {}), FIELD: list(programs[i])}
            elif not polar:
                param.extra_args = {**(param.extra_args or {}), FIELD: requests.IDENTITY}
        self._predict(prompt_list, params)
        return self._with_programs(super().generate, prompt_list, params, **kwargs)

    def chat(self, messages, sampling_params=None, *args, **kwargs) -> list[RequestOutput]:
        """``vllm.LLM.chat``; each ``CompletionOutput`` also gets ``polar`` (its program)."""
        return self._with_programs(super().chat, messages, sampling_params, *args, **kwargs)

    def _with_programs(self, run, *args, **kwargs) -> list[RequestOutput]:
        """``run(*args, **kwargs)`` with each completion's program (as recorded when its
        request was processed) set as ``completion.polar``."""
        try:
            outputs = run(*args, **kwargs)
            for output in outputs:
                ran = self.ran_programs.pop(output.request_id)
                for completion in output.outputs:
                    program = ran[completion.index]
                    completion.polar = RanProgram(program, format_program(program), len(program))
        finally:
            self.ran_programs.clear()
        return outputs

    def _params_per_prompt(self, sampling_params, count: int) -> list[SamplingParams]:
        if sampling_params is None:
            sampling_params = self.get_default_sampling_params()
        if isinstance(sampling_params, SamplingParams):
            return [sampling_params.clone() for _ in range(count)]
        if len(sampling_params) != count:
            raise ValueError(
                f"sampling_params has {len(sampling_params)} entries for {count} prompts"
            )
        return [p.clone() for p in sampling_params]

    def _predict(self, prompts: list, params: list[SamplingParams]) -> None:
        """One predictor batch for every prompt that needs a program."""
        sidecar = sidecar_for(self.polar_config)
        todo = [i for i, p in enumerate(params) if requests.needs_prediction(p)]
        if sidecar is None or not todo:
            return
        tokenizer = self.get_tokenizer()
        for n in sorted({params[i].n for i in todo}):
            batch = [i for i in todo if params[i].n == n]
            texts = [requests.prompt_text(prompts[i], None, tokenizer) for i in batch]
            for i, predicted in zip(batch, sidecar.predict(texts, n)):
                params[i].extra_args = {
                    **(params[i].extra_args or {}),
                    requests.CHILD_PROGRAMS: [list(p) for p in predicted],
                }

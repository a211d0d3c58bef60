"""The reward through vLLM: greedy direct-answer decoding under a program, graded against gold.

One :class:`EngineEvaluator` wraps one PoLar engine; a call sends the whole batch of
(question, program) pairs to ``LLM.generate`` at once, each request carrying its program and
``stop_after_boxed`` (a completion ends right after its first closed ``\\boxed{}``,
:mod:`polar.stopping`). Every evaluated pair keeps its completion text, extracted answer and both
gradings (:func:`polar.answers.grade`); the reward is the strict grade.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polar.answers import grade
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.search.batch import Pair
from polar.search.records import Graded
from polar.stopping import STOP_AFTER_BOXED, BoxedAnswerStop
from polar.tasks import Example
from vllm_polar.program import FIELD, Program, identity

ENGINE_OPTIONS = {"max_num_seqs": 256, "max_num_batched_tokens": 4096, "block_size": 32, "seed": 0}
"""A search round sends up to 256 pairs (64 questions in flight × waves of 4, or 30 × 8 in
``benchmarks/search.py``), each with its own program: all of them decode in one batch, so a
layer run that few programs need at that point is shared by as many tokens as the round has
(128 sequences: 0.89× the simulations/s on the benchmark, § Search of benchmarks/README)."""


def model_depth(model_path: str) -> int:
    """Decoder layers D of a Hugging Face checkpoint folder (``num_hidden_layers``)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_path).num_hidden_layers)


def default_slots(depth: int) -> int:
    """The runtime's default slot count S = ceil(1.25 D)."""
    return math.ceil(1.25 * depth)


def start_engine(model_path: str | Path, slots: int, max_model_len: int = 1024, **kwargs):
    """A float32 PoLar engine with ``slots`` step slots (the longest program it runs) and the
    boxed-answer stop available to its requests."""
    from vllm_polar import LLM

    return LLM(
        model=str(model_path),
        dtype="float32",
        max_model_len=max_model_len,
        max_steps=slots,
        logits_processors=[BoxedAnswerStop],
        **(ENGINE_OPTIONS | kwargs),
    )


def stop_engine(llm) -> None:
    """Shut the engine's worker processes down now (not at interpreter exit)."""
    llm.llm_engine.engine_core.shutdown()


def engine_record(llm) -> dict[str, Any]:
    """What a row needs to say about the engine that produced it."""
    import torch
    import vllm

    config = llm.llm_engine.vllm_config
    return {
        "model": config.model_config.model,
        "dtype": str(config.model_config.dtype).removeprefix("torch."),
        "slots": llm.polar_config.max_steps,
        "max_new_tokens": MAX_NEW_TOKENS,
        "stop_after_boxed": True,
        "max_num_seqs": config.scheduler_config.max_num_seqs,
        "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
        "block_size": config.cache_config.block_size,
        "seed": config.model_config.seed,
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


class EngineEvaluator:
    """``evaluate(pairs) -> rewards`` on a PoLar engine; also samples the base model.

    ``results[question id][program]`` holds every evaluated pair's :data:`Graded` record.
    ``stop_after_boxed=False`` decodes every completion to a stop token or the token limit (what
    the search did before the stop; ``benchmarks/search.py`` compares the two).
    """

    def __init__(
        self,
        llm,
        examples: Sequence[Example],
        max_new_tokens: int = MAX_NEW_TOKENS,
        stop_after_boxed: bool = True,
    ):
        self.llm = llm
        tokenizer = llm.get_tokenizer()
        self.examples = {e.id: e for e in examples}
        self.prompts = {
            e.id: tokenizer.encode(direct_answer_prompt(e.question, tokenizer)) for e in examples
        }
        self.depth = llm.polar_config.num_layers
        self.max_new_tokens = max_new_tokens
        self.stop_after_boxed = stop_after_boxed
        self.results: dict[str, dict[Program, Graded]] = {e.id: {} for e in examples}

    def __call__(self, pairs: Sequence[Pair]) -> list[float]:
        outputs = self.generate([(q, p, 1, 0.0) for q, p in pairs])
        for (question_id, program), output in zip(pairs, outputs):
            self.results[question_id][program] = self.graded(question_id, output.outputs[0])
        return [float(self.results[q][p]["strict"]) for q, p in pairs]

    def sample(self, counts: dict[str, int], temperature: float) -> dict[str, list[Graded]]:
        """``counts[question id]`` completions of the identity program at ``temperature``
        (one request with ``n`` children per question; the engine's seed seeds them)."""
        base = identity(self.depth)
        questions = [q for q, n in counts.items() if n > 0]
        outputs = self.generate([(q, base, counts[q], temperature) for q in questions])
        return {
            q: [self.graded(q, completion) for completion in output.outputs]
            for q, output in zip(questions, outputs)
        }

    def generate(self, requests: Sequence[tuple[str, Program, int, float]]) -> list:
        """One ``LLM.generate`` call for (question id, program, n, temperature) requests."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not requests:
            return []
        prompts = [TokensPrompt(prompt_token_ids=self.prompts[q]) for q, _, _, _ in requests]
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                max_tokens=self.max_new_tokens,
                extra_args={FIELD: list(program), STOP_AFTER_BOXED: self.stop_after_boxed},
            )
            for _, program, n, temperature in requests
        ]
        return self.llm.generate(prompts, params, use_tqdm=False)

    def graded(self, question_id: str, completion) -> Graded:
        return {
            "completion": completion.text,
            **grade(completion.text, self.examples[question_id].answer),
        }

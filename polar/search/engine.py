"""The reward through vLLM: greedy direct-answer decoding under a program, checked for gold.

One :class:`EngineEvaluator` wraps one PoLar engine; a call sends the whole batch of
(question, program) pairs to ``LLM.generate`` at once, each request carrying its program.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from polar.answers import extract_answer, is_correct
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.search.batch import Pair
from polar.tasks import Example
from vllm_polar.program import FIELD, Program


def model_depth(model_path: str) -> int:
    """Decoder layers D of a Hugging Face checkpoint folder (``num_hidden_layers``)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_path).num_hidden_layers)


def default_slots(depth: int) -> int:
    """The runtime's default slot count S = ceil(1.25 D)."""
    return math.ceil(1.25 * depth)


def start_engine(model_path: str | Path, slots: int, max_model_len: int = 1024, **kwargs):
    """A float32 PoLar engine with ``slots`` step slots (the longest program it runs)."""
    from vllm import LLM

    options = {"max_num_seqs": 128, "max_num_batched_tokens": 4096, "seed": 0} | kwargs
    return LLM(
        model=str(model_path),
        dtype="float32",
        max_model_len=max_model_len,
        additional_config={"polar": {"max_steps": slots}},
        **options,
    )


def stop_engine(llm) -> None:
    """Shut the engine's worker processes down now (not at interpreter exit)."""
    llm.llm_engine.engine_core.shutdown()


class EngineEvaluator:
    """``evaluate(pairs) -> rewards`` on a PoLar engine; ``answers[question id][program]`` keeps
    the extracted answer of every pair it evaluated."""

    def __init__(self, llm, examples: Sequence[Example], max_new_tokens: int = MAX_NEW_TOKENS):
        tokenizer = llm.get_tokenizer()
        self.llm = llm
        self.examples = {e.id: e for e in examples}
        self.prompts = {e.id: direct_answer_prompt(e.question, tokenizer) for e in examples}
        self.max_new_tokens = max_new_tokens
        self.answers: dict[str, dict[Program, str | None]] = {e.id: {} for e in examples}

    def __call__(self, pairs: Sequence[Pair]) -> list[float]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=0.0, max_tokens=self.max_new_tokens, extra_args={FIELD: list(program)}
            )
            for _, program in pairs
        ]
        prompts = [self.prompts[question_id] for question_id, _ in pairs]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        rewards = []
        for (question_id, program), output in zip(pairs, outputs):
            text = output.outputs[0].text
            self.answers[question_id][program] = extract_answer(text)
            rewards.append(1.0 if is_correct(text, self.examples[question_id].answer) else 0.0)
        return rewards

"""The reward through vLLM: greedy direct-answer decoding under a program, checked for gold.

One :class:`EngineEvaluator` wraps one PoLar engine; a call sends the whole batch of
(question, program) pairs to ``LLM.generate`` at once, each request carrying its program.

Reuse of known completions: once a question has been answered under some program, a new program
for it is first *checked* against the question's most common completion R instead of decoded:
one prefill of ``prompt + R[:-1]`` with ``prompt_logprobs=1`` and one generated token gives the
program's argmax at every position of R. Greedy decoding emits exactly the tokens up to the first
position where that argmax differs from R, then the argmax itself; so when R is matched to its end
(its stop token, or the 50-token limit) the program's completion *is* R and nothing is decoded,
and otherwise decoding continues from the matched prefix. Exact, not an approximation: the
tokens are those greedy decoding produces (up to float rounding between a prefill and a decode).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from polar.answers import extract_answer, is_correct
from polar.prompts import MAX_NEW_TOKENS, direct_answer_prompt
from polar.search.batch import Pair
from polar.tasks import Example
from vllm_polar.program import FIELD, Program

Tokens = tuple[int, ...]


def model_depth(model_path: str) -> int:
    """Decoder layers D of a Hugging Face checkpoint folder (``num_hidden_layers``)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_path).num_hidden_layers)


def default_slots(depth: int) -> int:
    """The runtime's default slot count S = ceil(1.25 D)."""
    return math.ceil(1.25 * depth)


def start_engine(model_path: str | Path, slots: int, max_model_len: int = 1024, **kwargs):
    """A float32 PoLar engine with ``slots`` step slots (the longest program it runs).

    KV blocks of 32 tokens (CPU's default is 128) let a continuation reuse the cached prompt
    blocks of the check that preceded it.
    """
    from vllm import LLM

    options = {
        "max_num_seqs": 128,
        "max_num_batched_tokens": 4096,
        "block_size": 32,
        "seed": 0,
    } | kwargs
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


@dataclass
class Reuse:
    """What the checks against known completions saved (counts of pairs and tokens)."""

    decoded: int = 0
    """Pairs decoded from the prompt (no known completion to check yet)."""
    confirmed: int = 0
    """Pairs whose whole completion a check confirmed (nothing decoded)."""
    continued: int = 0
    """Pairs decoded from the end of the prefix a check confirmed."""
    tokens_checked: int = 0
    """Completion tokens fixed by checks instead of decode steps."""


class EngineEvaluator:
    """``evaluate(pairs) -> rewards`` on a PoLar engine.

    ``completions[question id][program]`` keeps every evaluated pair's generated token ids (the
    stop token included when one ended it), ``answers[question id][program]`` its extracted
    answer. ``reuse=True`` checks new pairs against known completions first (module docstring);
    off by default: on CPU the check's full-vocabulary prompt log-probs cost more than the
    decode steps it saves (``benchmarks/search.py``).
    """

    def __init__(
        self,
        llm,
        examples: Sequence[Example],
        max_new_tokens: int = MAX_NEW_TOKENS,
        reuse: bool = False,
    ):
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.examples = {e.id: e for e in examples}
        self.prompts = {
            e.id: tuple(self.tokenizer.encode(direct_answer_prompt(e.question, self.tokenizer)))
            for e in examples
        }
        self.stop_ids = stop_token_ids(llm)
        self.max_new_tokens = max_new_tokens
        self.reuse = reuse
        self.stats = Reuse()
        self.completions: dict[str, dict[Program, Tokens]] = {e.id: {} for e in examples}
        self.answers: dict[str, dict[Program, str | None]] = {e.id: {} for e in examples}

    def __call__(self, pairs: Sequence[Pair]) -> list[float]:
        references = {q: self.reference(q) for q, _ in pairs} if self.reuse else {}
        unchecked = [pair for pair in pairs if references.get(pair[0]) is None]
        checked = [pair for pair in pairs if references.get(pair[0]) is not None]
        outputs = self.generate(
            [(pair, ()) for pair in unchecked], [(pair, references[pair[0]]) for pair in checked]
        )
        known = {pair: tuple(o.outputs[0].token_ids) for pair, o in zip(unchecked, outputs)}
        for pair, output in zip(checked, outputs[len(unchecked) :]):
            known[pair] = greedy_prefix(references[pair[0]], output, len(self.prompts[pair[0]]))
            self.stats.tokens_checked += len(known[pair])
        unfinished = [pair for pair in checked if not self.finished(known[pair])]
        for pair, output in zip(unfinished, self.generate([(p, known[p]) for p in unfinished])):
            known[pair] += tuple(output.outputs[0].token_ids)
        self.stats.decoded += len(unchecked)
        self.stats.confirmed += len(checked) - len(unfinished)
        self.stats.continued += len(unfinished)
        return [self.record(pair, known[pair]) for pair in pairs]

    def generate(
        self, decode: list[tuple[Pair, Tokens]], check: Sequence[tuple[Pair, Tokens]] = ()
    ) -> list:
        """One ``LLM.generate`` call; its outputs in order, ``decode`` then ``check``.

        ``decode``: (pair, prefix) → greedy decoding of the rest of the completion after
        ``prefix``. ``check``: (pair, reference) → ``prompt + reference[:-1]`` with
        ``prompt_logprobs=1`` and one greedy token (read by :func:`greedy_prefix`).
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests = [
            (pair, prefix, self.max_new_tokens - len(prefix), None) for pair, prefix in decode
        ]
        requests += [(pair, reference[:-1], 1, 1) for pair, reference in check]
        if not requests:
            return []
        prompts = [
            TokensPrompt(prompt_token_ids=[*self.prompts[question_id], *forced])
            for (question_id, _), forced, _, _ in requests
        ]
        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=max_tokens,
                prompt_logprobs=prompt_logprobs,
                flat_logprobs=True,
                detokenize=False,  # answers are decoded from the token ids (record)
                extra_args={FIELD: list(program)},
            )
            for (_, program), _, max_tokens, prompt_logprobs in requests
        ]
        return self.llm.generate(prompts, params, use_tqdm=False)

    def finished(self, tokens: Tokens) -> bool:
        """Whether greedy decoding stops after ``tokens`` (a stop token or the length limit)."""
        return len(tokens) >= self.max_new_tokens or (bool(tokens) and tokens[-1] in self.stop_ids)

    def reference(self, question_id: str) -> Tokens | None:
        """The question's most common completion so far (the first seen among equals)."""
        seen = Counter(self.completions[question_id].values())
        return seen.most_common(1)[0][0] if seen else None

    def record(self, pair: Pair, tokens: Tokens) -> float:
        question_id, program = pair
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        self.completions[question_id][program] = tokens
        self.answers[question_id][program] = extract_answer(text)
        return 1.0 if is_correct(text, self.examples[question_id].answer) else 0.0


def greedy_prefix(reference: Tokens, check, prompt_len: int) -> Tokens:
    """The first tokens greedy decoding emits, read from a check of ``reference``: the part of
    ``reference`` the program's argmax agrees with, then the argmax where it first differs (all of
    ``reference`` when it agrees everywhere). ``check`` is the ``RequestOutput`` of the check.
    """
    for i, token in enumerate(reference[:-1]):
        ranked = check.prompt_logprobs[prompt_len + i]
        if ranked[token].rank != 1:
            top = next(t for t, logprob in ranked.items() if logprob.rank == 1)
            return (*reference[:i], top)
    return (*reference[:-1], check.outputs[0].token_ids[0])


def stop_token_ids(llm) -> frozenset[int]:
    """The token ids that end greedy decoding: the tokenizer's EOS and the generation config's."""
    ids = {llm.get_tokenizer().eos_token_id}
    eos = llm.llm_engine.model_config.try_get_generation_config().get("eos_token_id")
    ids |= {eos} if isinstance(eos, int) else set(eos or ())
    return frozenset(i for i in ids if i is not None)

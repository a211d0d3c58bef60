"""The paper's direct-answer prompt (Appendix D.4), in the model's chat template when it has one.

The model is asked for the final answer alone, in ``\\boxed{}``; search, training labels and
evaluation all use this prompt and then generate at most ``MAX_NEW_TOKENS`` tokens (greedily,
or sampled for the sampling baselines). The predictor reads this prompt too, as serving sees
it (:func:`predictor_input`).
"""

from __future__ import annotations

DIRECT_ANSWER = (
    "Solve the following math problem and output ONLY the final answer directly, formatted "
    "strictly as \\boxed{{ANSWER}}.\n"
    "### Problem Start\n"
    "{question}\n"
    "### Problem End\n"
    "Answer:"
)
MAX_NEW_TOKENS = 50


def direct_answer_text(question: str) -> str:
    """The user message: the instruction, the question between its markers, ``Answer:``."""
    return DIRECT_ANSWER.format(question=question.strip())


def direct_answer_prompt(question: str, tokenizer=None) -> str:
    """The full prompt string for ``question``.

    With a tokenizer that has a chat template, the message is wrapped as one user turn followed by
    the assistant header (``add_generation_prompt=True``); otherwise the bare message is returned.
    Pass the string to ``LLM.generate`` as is (the template already holds any special tokens).
    """
    text = direct_answer_text(question)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return text
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def predictor_input(question: str, tokenizer=None) -> str:
    """The text the predictor reads for ``question``: its prompt as the engine receives it,
    decoded without special tokens (``vllm_polar.runtime.requests.prompt_text``), so training
    sees what serving sees. Without a tokenizer, the bare user message."""
    if tokenizer is None:
        return direct_answer_text(question)
    from vllm_polar.runtime.requests import prompt_text

    return prompt_text(direct_answer_prompt(question, tokenizer), None, tokenizer)

"""The paper's direct-answer prompt, in the model's chat template when it has one.

The model is asked to put the final answer in ``\\boxed{}`` without explanation; evaluation then
generates at most ``MAX_NEW_TOKENS`` tokens greedily (or sampled for pass@k).
"""

from __future__ import annotations

DIRECT_ANSWER = (
    "Question: {question}\nThe final answer MUST BE put in \\boxed{{}} and no explanation."
)
MAX_NEW_TOKENS = 50


def direct_answer_text(question: str) -> str:
    """The user message: the question and the instruction to answer directly in ``\\boxed{}``."""
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

"""pass@k offline: k completions per question under the predictor's top-k programs.

python examples/offline_pass_at_k.py --model qwen2.5-coder-0.5b --predictor CKPT --k 3
"""

from __future__ import annotations

import argparse

from vllm import SamplingParams

from polar.answers import is_correct
from polar.models import resolve
from polar.prompts import direct_answer_prompt
from vllm_polar import LLM

QUESTIONS = [
    ("Ava has 3 apples and buys 4 more. How many apples does she have?", "7"),
    ("A train has 12 cars and 5 are removed. How many cars are left?", "7"),
    ("Ben saves 6 coins a day for 3 days. How many coins does he save?", "18"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="qwen2.5-coder-0.5b", help="HF id, path or prepared name"
    )
    parser.add_argument("--predictor", required=True, help="predictor checkpoint directory")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args(argv)

    model = resolve(args.model)
    llm = LLM(model=model, polar_predictor=args.predictor, dtype="float32", max_model_len=1024)
    tokenizer = llm.get_tokenizer()
    prompts = [direct_answer_prompt(question, tokenizer) for question, _ in QUESTIONS]
    params = SamplingParams(n=args.k, max_tokens=50, temperature=0)
    solved = 0
    for (question, gold), output in zip(QUESTIONS, llm.generate(prompts, params)):
        hits = [is_correct(c.text, gold) for c in output.outputs]
        solved += any(hits)
        print(question)
        for completion, hit in zip(output.outputs, hits):
            print(f"  [{'x' if hit else ' '}] {completion.polar.text:24s} {completion.text!r}")
    print(f"pass@{args.k}: {solved}/{len(QUESTIONS)}")


if __name__ == "__main__":
    main()

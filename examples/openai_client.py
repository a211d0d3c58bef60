"""Query a PoLar server with the stock OpenAI client.

vllm-polar serve MODEL --polar-predictor CKPT --served-model-name polar
python examples/openai_client.py --base-url http://127.0.0.1:8000/v1 --model polar
"""

from __future__ import annotations

import argparse

import openai


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="polar")
    parser.add_argument("--question", default="Ava has 3 apples and buys 4 more. How many now?")
    args = parser.parse_args(argv)
    client = openai.OpenAI(base_url=args.base_url, api_key="none")

    # No PoLar-specific arguments: the server's predictor picks the program.
    response = client.completions.create(
        model=args.model, prompt=args.question, max_tokens=32, temperature=0
    )
    print("predictor's program:", response.choices[0].text)

    # pass@3: three completions under the predictor's top-3 programs.
    response = client.completions.create(
        model=args.model, prompt=args.question, max_tokens=32, temperature=0, n=3
    )
    for choice in response.choices:
        print(f"program #{choice.index + 1}:", choice.text)

    # An explicit program (here: the stock depth) overrides the predictor.
    response = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": args.question}],
        max_tokens=32,
        temperature=0,
        extra_body={"vllm_xargs": {"polar_program": "identity"}},
    )
    print("identity program:", response.choices[0].message.content)


if __name__ == "__main__":
    main()

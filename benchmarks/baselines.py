"""Greedy direct-answer accuracy of stock vLLM (float32) on the tasks, one engine per model.

    VLLM_PLUGINS="" VLLM_CPU_KVCACHE_SPACE=2 HF_HUB_OFFLINE=1 \
        python benchmarks/baselines.py --data-dir ../shared/data --limit 50

Writes ``benchmarks/results/baselines.json`` (per model and task: accuracy, rows, share of boxed
answers, every completion with its verdict) and prints a Markdown table. Models are prepared
short names, HF ids or local folders; tasks are ``polar.tasks`` names.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DEFAULT_MODELS = ["qwen2.5-coder-0.5b", "smollm2-135m"]
DEFAULT_TASKS = [f"arith-{level}" for level in range(1, 6)] + [
    "mawps-singleop",
    "mawps-addsub",
    "mawps-singleeq",
    "mawps-multiarith",
    "asdiv",
    "gsm8k",
]


def evaluate_model(model: str, tasks: dict[str, list], max_new_tokens: int) -> dict[str, dict]:
    """Accuracy of ``model`` on each task's examples; one batched greedy ``generate`` call."""
    from vllm import LLM, SamplingParams

    from polar.answers import extract_boxed, is_correct
    from polar.models import resolve
    from polar.prompts import direct_answer_prompt

    llm = LLM(model=resolve(model), dtype="float32", max_model_len=2048, enforce_eager=True, seed=0)
    tokenizer = llm.get_tokenizer()
    flat = [(task, ex) for task, examples in tasks.items() for ex in examples]
    prompts = [direct_answer_prompt(ex.question, tokenizer) for _, ex in flat]
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params)
    seconds = time.perf_counter() - start
    results: dict[str, dict] = {}
    for (task, ex), output in zip(flat, outputs):
        text = output.outputs[0].text
        row = results.setdefault(task, {"rows": 0, "correct": 0, "boxed": 0, "completions": []})
        correct = is_correct(text, ex.answer)
        row["rows"] += 1
        row["correct"] += correct
        row["boxed"] += extract_boxed(text) is not None
        row["completions"].append(
            {"id": ex.id, "gold": ex.answer, "completion": text, "correct": correct}
        )
    for row in results.values():
        row["accuracy"] = row["correct"] / row["rows"]
        row["boxed_rate"] = row["boxed"] / row["rows"]
    results["_generate_seconds"] = {"value": seconds}
    llm.llm_engine.engine_core.shutdown()
    return results


def markdown_table(report: dict[str, dict], tasks: list[str]) -> str:
    models = list(report)
    lines = ["| task | rows | " + " | ".join(models) + " |"]
    lines.append("|---|---|" + "---|" * len(models))
    for task in tasks:
        rows = report[models[0]][task]["rows"]
        cells = [f"{100 * report[m][task]['accuracy']:.0f} %" for m in models]
        lines.append(f"| {task} | {rows} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--data-dir", default=os.environ.get("VLLM_POLAR_DATA"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=100, help="first N rows of each task")
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/baselines.json"))
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    from polar.tasks import load_task

    tasks = {
        t: load_task(t, args.split, limit=args.limit, data_dir=args.data_dir) for t in args.tasks
    }
    from polar.search.records import code_version

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    for model in args.models:  # the JSON is rewritten after each model: a crash keeps the rest
        report[model] = evaluate_model(model, tasks, args.max_new_tokens)
        meta = vars(args) | {"out": str(args.out), "commit": code_version()}
        args.out.write_text(json.dumps({"args": meta, **report}, indent=1))
    print(markdown_table(report, args.tasks))


if __name__ == "__main__":
    main()

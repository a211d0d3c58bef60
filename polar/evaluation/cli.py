"""``polar eval``: pass@k of a predictor's programs beside the base model and the controls."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from polar.evaluation.run import OOD_TASKS, TEMPERATURES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a predictor against base greedy, base sampling and program controls",
        description="Runs Base τ=0, Base sampling, PoLar (top-k programs), Fixed best, Random "
        "programs and ShortGPT on one engine; writes results.json, completions.jsonl, "
        "results.md and plots into --out.",
    )
    parser.add_argument("--model", required=True, help="prepared name, HF folder or id")
    parser.add_argument("--ckpt", required=True, help="predictor checkpoint directory")
    parser.add_argument("--task", default="arith", help="registered task name or JSONL path")
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-level", type=int, default=None, help="first N questions per level")
    parser.add_argument("--limit", type=int, default=None, help="first N questions")
    parser.add_argument("--k", type=int, default=5, help="tries per question (pass@1..k)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--temperatures", type=float, nargs="+", default=list(TEMPERATURES),
        help="base-sampling temperatures to choose from on validation",
    )  # fmt: skip
    parser.add_argument("--val-split", default="val")
    parser.add_argument(
        "--val-per-level", type=int, default=20, help="validation questions per level"
    )
    parser.add_argument(
        "--fixed-candidates", type=int, default=16,
        help="programs valid for the most training questions tried for Fixed best",
    )  # fmt: skip
    parser.add_argument(
        "--supervision", type=Path, nargs="+", default=None,
        help="training supervision files (default: the checkpoint's training data)",
    )  # fmt: skip
    parser.add_argument(
        "--ood", nargs="*", default=list(OOD_TASKS), help="out-of-distribution tasks (pass@1)"
    )
    parser.add_argument("--ood-limit", type=int, default=200, help="first N rows of each")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from polar.evaluation.report import markdown
    from polar.evaluation.run import EvalSettings, evaluate

    settings = EvalSettings(
        model=args.model,
        ckpt=str(args.ckpt),
        task=args.task,
        split=args.split,
        per_level=args.per_level,
        limit=args.limit,
        k=args.k,
        temperatures=tuple(args.temperatures),
        val_split=args.val_split,
        val_per_level=args.val_per_level,
        fixed_candidates=args.fixed_candidates,
        supervision=tuple(str(p) for p in args.supervision or ()),
        ood=tuple(args.ood),
        ood_limit=args.ood_limit,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    print(markdown(evaluate(settings, args.out)))
    return 0

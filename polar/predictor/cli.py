"""``polar train``, ``polar predict`` and ``polar import-mcts``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polar.predictor.training import MIN_STEPS, Hyperparameters


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a program predictor")
    train.add_argument(
        "--data", type=Path, nargs="+", required=True,
        help="supervision JSONL file(s); rows of the same question are merged",
    )  # fmt: skip
    train.add_argument("--encoder", required=True, help="sentence-transformers name or path")
    depth = train.add_mutually_exclusive_group(required=True)
    depth.add_argument(
        "--base-model",
        help="base model (path or name): D from its config, and the predictor reads each "
        "question in its chat template, as serving does",
    )
    depth.add_argument(
        "--num-layers", type=int,
        help="depth D only: the predictor reads the bare prompt (for a model without template)",
    )  # fmt: skip
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    defaults = Hyperparameters()
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument(
        "--epochs", type=int, default=None,
        help=f"default: as many as {MIN_STEPS} optimisation steps take",
    )  # fmt: skip
    train.add_argument(
        "--patience", type=int, default=defaults.patience,
        help="stop after this many epochs without a lower validation loss",
    )  # fmt: skip
    train.add_argument(
        "--grid", action="store_true", help="search the paper's lr x batch x epochs grid"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val-fraction", type=float, default=0.1)
    train.add_argument(
        "--identity-weight",
        type=float,
        default=0.3,
        help="weight of the full-depth program when a shorter valid one exists",
    )
    train.add_argument(
        "--max-steps", type=int, help="step budget (default: most steps in the data)"
    )
    train.add_argument("--hidden-size", type=int, default=256)
    train.add_argument("--num-heads", type=int, default=4)
    train.add_argument("--num-blocks", type=int, default=2)
    train.add_argument("--cache-dir", type=Path, help="token-embedding cache directory")
    add_threads_argument(train)
    train.set_defaults(func=run_train)

    predict = subparsers.add_parser(
        "predict",
        help="top-k programs for a question",
        description="The predictor reads the question in the direct-answer prompt of the "
        "checkpoint's base model, as a served request gives it.",
    )
    predict.add_argument("--ckpt", type=Path, required=True, help="checkpoint directory")
    predict.add_argument("--k", type=int, default=5, help="number of distinct programs")
    predict.add_argument("--min-steps", type=int, default=1, help="fewest executed steps")
    predict.add_argument(
        "--max-steps", type=int, help="most executed steps (default: the checkpoint's budget)"
    )
    predict.add_argument(
        "--length-penalty",
        type=float,
        default=0.0,
        help="score penalty per executed step (> 0 favours shorter programs)",
    )
    predict.add_argument(
        "--threshold", type=float, default=0.5, help="boundary probability that starts a segment"
    )
    predict.add_argument("--encoder", help="override the checkpoint's encoder name or path")
    predict.add_argument("--json", action="store_true", help="last line: the candidates as JSON")
    add_threads_argument(predict)
    predict.add_argument("question")
    predict.set_defaults(func=run_predict)

    importer = subparsers.add_parser(
        "import-mcts", help="convert merged_mcts_samples.json files to supervision JSONL"
    )
    importer.add_argument("inputs", type=Path, nargs="+")
    importer.add_argument("--out", type=Path, required=True)
    importer.set_defaults(func=run_import)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's); use 1 on cores shared with an engine",
    )


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def run_train(args: argparse.Namespace) -> int:
    from polar.predictor.fit import fit
    from polar.predictor.resolve import model_depth
    from polar.predictor.training import PAPER_GRID

    set_threads(args.threads)
    try:
        num_layers = args.num_layers or model_depth(args.base_model)
        grid = (
            PAPER_GRID
            if args.grid
            else [Hyperparameters(args.lr, args.batch_size, args.epochs, args.patience)]
        )
        config = fit(
            args.data,
            args.encoder,
            num_layers,
            args.out,
            base_model=args.base_model,
            grid=grid,
            seed=args.seed,
            val_fraction=args.val_fraction,
            identity_weight=args.identity_weight,
            max_steps=args.max_steps,
            hidden_size=args.hidden_size,
            num_heads=args.num_heads,
            num_blocks=args.num_blocks,
            cache_dir=args.cache_dir,
        )
    except (ValueError, OSError) as error:
        print(f"polar train: error: {error}", file=sys.stderr)
        return 1
    selected = config.training["selected"]
    print(
        f"saved {args.out}: depth {num_layers}, step budget {config.max_steps}, "
        f"val top-1 {selected['top1']:.3f} (lr {selected['lr']}, batch {selected['batch_size']}, "
        f"best epoch {selected['best_epoch']} of {selected['epochs_run']}, "
        f"{selected['steps']} steps)"
    )
    baseline = config.training["majority_baseline"]
    if not config.training["beats_majority"]:
        print(
            f"polar train: warning: validation top-1 {selected['top1']:.3f} is no better than "
            f"always answering the most common program ({baseline['top1']:.3f}): the predictor "
            "has learnt nothing the data did not give for free",
            file=sys.stderr,
        )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from polar.predictor.checkpoint import load

    set_threads(args.threads)
    try:
        predictor = load(args.ckpt, encoder=args.encoder)
        candidates = predictor.predict(
            [question_input(args.question, predictor.config.base_model)],
            args.k,
            min_steps=args.min_steps,
            max_steps=args.max_steps,
            length_penalty=args.length_penalty,
            threshold=args.threshold,
        )[0]
    except ValueError as error:
        print(f"polar predict: error: {error}", file=sys.stderr)
        return 1
    for rank, candidate in enumerate(candidates, 1):
        steps = len(candidate.program)
        print(f"{rank}  {candidate.score:9.4f}  {steps:3d} steps  {candidate.text}")
    if args.json:
        print(json.dumps([candidate.to_json() for candidate in candidates]))
    return 0


def question_input(question: str, base_model: str | None) -> str:
    """What the predictor reads for a question: its prompt as the base model is served it."""
    from polar.predictor.resolve import resolve_model
    from polar.prompts import predictor_input

    tokenizer = None
    if base_model is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(base_model))
    return predictor_input(question, tokenizer)


def run_import(args: argparse.Namespace) -> int:
    from polar.predictor.labels import import_mcts_samples, write_supervision

    rows = [row for path in args.inputs for row in import_mcts_samples(path)]
    write_supervision(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0

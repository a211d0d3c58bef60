"""``polar search``: MCTS program search for a task, batched through one PoLar engine."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from polar.search.controls import TEMPERATURES
from polar.search.space import SPACES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="find valid programs per question (supervision for the predictor)",
        description="MCTS over programs of layers per question; writes supervision JSONL, "
        "search_stats.json and plots. Resumes from --out when it exists.",
    )
    parser.add_argument("--model", required=True, help="prepared name, HF folder or id")
    parser.add_argument("--task", required=True, help="registered task name or JSONL path")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, required=True, help="supervision JSONL (first space)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions")
    parser.add_argument("--per-level", type=int, default=None, help="first N questions per level")
    parser.add_argument("--simulations", type=int, default=100, help="per question and space")
    parser.add_argument(
        "--space",
        nargs="+",
        default=["skip_loop"],
        choices=SPACES,
        help="spaces to search; each further space writes <out>.<space>.jsonl",
    )
    parser.add_argument("--slots", type=int, default=None, help="engine slot count S")
    parser.add_argument("--min-steps", type=int, default=None, help="default D // 2")
    parser.add_argument("--max-steps", type=int, default=None, help="default S")
    parser.add_argument("--max-block", type=int, default=4, help="k: steps per skip/repeat")
    parser.add_argument("--max-repeats", type=int, default=4, help="r: runs of a looped block")
    parser.add_argument("--max-layer-uses", type=int, default=4)
    parser.add_argument("--exploration", type=float, default=1.0, help="UCB c")
    parser.add_argument("--length-penalty", type=float, default=0.1, help="UCB lambda")
    parser.add_argument("--wave", type=int, default=8, help="simulations per question per batch")
    parser.add_argument("--max-active", type=int, default=32, help="questions in flight")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-controls",
        dest="controls",
        action="store_false",
        help="skip the same-budget controls (base sampling, random programs)",
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=list(TEMPERATURES),
        help="base-sampling temperatures of the controls",
    )
    parser.add_argument(
        "--recheck",
        type=int,
        default=0,
        metavar="N",
        help="re-evaluate N stored (question, program) pairs and report the agreement",
    )
    parser.add_argument("--stats-dir", type=Path, default=None, help="default: beside --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from polar.search.mcts import MCTSConfig
    from polar.search.run import search

    mcts = MCTSConfig(
        simulations=args.simulations,
        exploration=args.exploration,
        length_penalty=args.length_penalty,
        wave=args.wave,
    )
    stats = search(
        args.model,
        args.task,
        args.out,
        split=args.split,
        limit=args.limit,
        per_level=args.per_level,
        spaces=args.space,
        slots=args.slots,
        min_steps=args.min_steps,
        max_steps=args.max_steps,
        stats_dir=args.stats_dir,
        max_active=args.max_active,
        max_block=args.max_block,
        max_repeats=args.max_repeats,
        max_layer_uses=args.max_layer_uses,
        seed=args.seed,
        mcts=mcts,
        controls=args.controls,
        temperatures=args.temperatures,
        recheck_pairs=args.recheck,
    )
    print(summary(stats))
    return 0


def summary(stats: dict) -> str:
    """The human summary: oracle accuracy over all levels, each pair of spaces head to head,
    then the oracle against its same-budget controls."""
    table = stats["oracle_accuracy"]["all"]
    lines = [
        "oracle accuracy (all levels, strict): "
        + ", ".join(
            f"{name} {100 * value:.1f} %"
            for name, value in table.items()
            if name != "n" and value is not None
        )
    ]
    for counts in stats["head_to_head"].values():
        a, b = counts["a"], counts["b"]
        lines.append(
            f"{a} vs {b}: solved only by {a} {counts['only_a']}, only by {b} {counts['only_b']} "
            f"of {counts['questions']} (exact McNemar p = {counts['p_value']:.2f})"
        )
    for space, levels in stats.get("controls", {}).get("strict", {}).items():
        entry = levels["all"]
        lines.append(
            f"{space}: oracle {100 * entry['oracle']:.1f} % vs base sampling "
            f"{100 * entry['sampling_best']:.1f} % (T = {entry['best_temperature']:g}) and random "
            f"programs {100 * entry['random']:.1f} % at {entry['mean_tries']:.1f} tries: "
            f"search gain {100 * entry['search_gain']:+.1f} points"
        )
    return "\n".join(lines)

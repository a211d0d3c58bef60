"""Question selection, output paths and the ``polar search`` arguments (no engine)."""

from __future__ import annotations

import argparse
from pathlib import Path

from polar.search import cli
from polar.search.run import output_paths, select_examples


def test_per_level_takes_the_first_questions_of_every_level():
    examples = select_examples("arith", "train", per_level=2)
    assert [e.metadata["level"] for e in examples] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [e.id for e in select_examples("arith", "train", limit=3)] == [
        e.id for e in select_examples("arith-1", "train")[:3]
    ]


def test_each_further_space_writes_beside_the_supervision_file():
    paths = output_paths(Path("out/sup.jsonl"), ["skip_loop", "skip", "loop"])
    assert paths == {
        "skip_loop": Path("out/sup.jsonl"),
        "skip": Path("out/sup.skip.jsonl"),
        "loop": Path("out/sup.loop.jsonl"),
    }


def test_search_command_arguments():
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["search", "--model", "m", "--task", "t", "--out", "o.jsonl", "--space", "skip", "loop"]
    )
    assert args.func is cli.run
    assert (args.split, args.simulations, args.space) == ("train", 100, ["skip", "loop"])

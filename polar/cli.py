"""The ``polar`` command: one sub-command module per concern.

Each module listed in ``COMMANDS`` exposes ``add_parser(subparsers)``, which adds its
sub-command(s) and sets ``func`` on them; ``func(args)`` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: list[str] = [
    "polar.models",
    "polar.predictor.cli",
    "polar.search.cli",
    "polar.evaluation.cli",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polar", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

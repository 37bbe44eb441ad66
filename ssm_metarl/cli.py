"""Command line: ``python -m ssm_metarl {bench,...}``.

Each subcommand is one function ``cmd_NAME(args)`` with its parser built in
:func:`build_parser`; see the book's appendix for every artifact's command.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["main", "build_parser"]


def cmd_bench(args: argparse.Namespace) -> int:
    from . import benchmark

    names = benchmark.available()
    if args.name not in names:
        raise SystemExit(f"unknown benchmark {args.name!r}; choose one of {names}")
    result = getattr(benchmark, f"bench_{args.name}")(args)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ssm_metarl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="speed benchmarks measured side by side in one run")
    bench.add_argument("name", help="which benchmark (e.g. ssm, rollout, rl, maml)")
    bench.add_argument("--seed", type=int, default=0)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

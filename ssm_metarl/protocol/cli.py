"""Train every replicated model and write the results store, in one run.

``python -m ssm_metarl replicate`` (chapters 3-4).

It trains the study's units two at a time (``--workers``), scores every model, and
writes ``models/results.json``. Every stage skips what is already on disk, so an
interrupted run resumes; ``--root`` holds the models and their cards. Taught in
chapter 3; the commands are listed in the appendix.
"""

from __future__ import annotations

import argparse
import shlex
import sys

__all__ = ["add_parsers", "check_replicate", "cmd_replicate"]


def check_replicate(args: argparse.Namespace) -> None:
    """``--workers`` a positive int, ``--root`` a usable folder, ``--store`` a usable
    JSON path, before any work (chapter 3)."""
    from ..io.paths import check_out_file
    from ..io.validation import check_int

    check_int("--workers", args.workers)
    check_out_file("--store", args.store, suffix=".json", siblings=())
    check_out_file("--root", f"{args.root}/study.json", suffix=".json", siblings=())


def cmd_replicate(args: argparse.Namespace) -> int:
    """Run the study and write the store (chapter 3)."""
    from .gather import run_study

    command = "python -m ssm_metarl " + shlex.join(sys.argv[1:] or ["replicate"])
    document = run_study(args.root, args.store, args.workers, command)
    seconds = document["study"]["wall_seconds"]["study_wall_seconds"]
    print(f"wrote {args.store}: the study took {seconds / 60:.1f} min of wall time")
    return 0


def add_parsers(sub) -> None:
    """Register ``replicate`` on the main parser's subcommands (chapter 3)."""
    parser = sub.add_parser(
        "replicate",
        help="train every replicated model and write the results store",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="training processes, one torch thread each (default: 2)",
    )
    parser.add_argument(
        "--root",
        default="models/replication",
        help="where the models, cards and measurements go (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        default="models/results.json",
        help="the results store to write (default: %(default)s)",
    )
    parser.set_defaults(func=cmd_replicate, check=check_replicate, argv=None)

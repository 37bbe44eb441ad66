"""Train every peer of chapter 6 in one interleaved run and write ``peers.json``.

``python -m ssm_metarl peers --workers 2 --root models/peers``. Every run is written
to ``ROOT/runs/`` as it finishes, so an interrupted run resumes where it stopped.
Needs the ``bench`` extra. Taught in chapter 6; the command is listed in the appendix.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys

__all__ = ["add_parsers", "check_peers", "cmd_peers"]


def check_peers(args: argparse.Namespace) -> None:
    """``--workers`` a positive int, ``--root`` a usable folder and the ``bench``
    extra installed, before any training (chapter 6)."""
    from ..io.paths import check_out_file
    from ..io.validation import check_int

    check_int("--workers", args.workers)
    check_out_file("--root", f"{args.root}/peers.json", suffix=".json", siblings=())
    for module in ("stable_baselines3", "sb3_contrib"):
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"peers needs {module}: pip install 'ssm-metarl[bench]'")


def cmd_peers(args: argparse.Namespace) -> int:
    """Run the peers study (chapter 6)."""
    from .peers_study import run_peers_study

    command = "python -m ssm_metarl " + shlex.join(sys.argv[1:] or ["peers"])
    result = run_peers_study(args.root, args.workers, command)
    minutes = result["card"]["wall_seconds"] / 60
    print(
        f"wrote {args.root}/peers.json: {len(result['runs'])} runs, {minutes:.1f} min"
    )
    return 0


def add_parsers(sub) -> None:
    """Register ``peers`` on the main parser's subcommands (chapter 6)."""
    parser = sub.add_parser(
        "peers",
        help="chapter 6: train every peer, seed by seed, in one run",
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
        default="models/peers",
        help="where the runs and peers.json go (default: %(default)s)",
    )
    parser.set_defaults(func=cmd_peers, check=check_peers, argv=None)

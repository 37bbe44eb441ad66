"""Command line of chapter 7's study: ``python -m ssm_metarl memory --workers 2``.

Trains every unit of `ssm_metarl.bench.memory_study.plan` in worker processes (one
torch thread each), reading back any unit whose card exists, so a killed study
resumes; then writes the study's card, ``ROOT/memory.json``, with the command, the
budgets, the wall time and how many units were read back. Chapter 7.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

__all__ = ["add_parsers", "cmd_memory", "check_memory"]


def cmd_memory(args: argparse.Namespace) -> int:
    """Run (or resume) the memory study and write its card (chapter 7)."""
    from ..io.atomic import save_json
    from ..protocol.runner import in_processes
    from .memory_study import TASKS, plan, run_unit

    root, start = Path(args.root), time.perf_counter()
    units = plan(cores=args.cores, seeds=args.seeds)
    before = {u.name for u in units if (root / "runs" / f"{u.name}.json").exists()}
    cards = in_processes([(run_unit, u, root) for u in units], args.workers)
    card = {
        "command": "python -m ssm_metarl " + " ".join(map(shlex.quote, args.argv)),
        "tasks": TASKS,
        "units": [c["name"] for c in cards],
        "runs_read_back": len(before),
        "wall_seconds": time.perf_counter() - start,
        "run_seconds": sum(c["seconds"] for c in cards),
        "workers": args.workers,
    }
    root.mkdir(parents=True, exist_ok=True)
    save_json(root / "memory.json", card)
    print(f"{len(cards)} units in {card['wall_seconds'] / 60:.1f} min: {root}")
    return 0


def check_memory(args: argparse.Namespace) -> None:
    """Every ``memory`` flag checked before any work (chapter 7)."""
    from ..io.validation import check_int
    from ..models.memory import MEMORY_CORES

    check_int("--workers", args.workers)
    check_int("--seeds", args.seeds)
    unknown = set(args.cores or ()) - set(MEMORY_CORES)
    if unknown:
        raise ValueError(
            f"unknown --cores {sorted(unknown)}; choose from {list(MEMORY_CORES)}"
        )
    cards = Path(args.root) / "runs"
    for path in sorted(cards.glob("*.json")) if cards.is_dir() else ():
        try:
            json.loads(path.read_text())["task"]
        except (ValueError, KeyError) as exc:
            raise ValueError(
                f"{path} is not a unit card ({type(exc).__name__}): delete it to "
                "retrain that unit"
            ) from None


def add_parsers(sub) -> None:
    """Register ``memory`` (chapter 7)."""
    memory = sub.add_parser(
        "memory", help="chapter 7's study: four memories, three tasks, several seeds"
    )
    memory.add_argument("--root", default="models/memory", help="where runs go")
    memory.add_argument("--workers", type=int, default=2, help="processes")
    memory.add_argument("--seeds", type=int, default=5, help="seeds per core and task")
    memory.add_argument("--cores", nargs="+", default=None, help="a subset of cores")
    memory.set_defaults(func=cmd_memory, check=check_memory)

"""Command line of chapter 7's study: ``python -m ssm_metarl memory --workers 2``.

Trains every unit of `ssm_metarl.bench.memory_study.plan` in worker processes (one
torch thread each), reading back any unit whose card exists, so a killed study
resumes; then writes the study's card, ``ROOT/memory.json``: the budgets, the units,
their summed training seconds, and one entry per invocation (command, wall time,
units trained and read back), so a study run in parts states its whole wall time; and
``ROOT/summary.json``, everything chapter 7 reports (`memory_report.summarize`).
Chapter 7.
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
    from .memory_report import summarize
    from .memory_study import EXTRA, TASKS, VARIANTS, plan, rounded, run_unit

    root, start = Path(args.root), time.perf_counter()
    units = plan(cores=args.cores, seeds=args.seeds)
    before = {u.name for u in units if (root / "runs" / f"{u.name}.json").exists()}
    cards = in_processes([(run_unit, u, root) for u in units], args.workers)
    path = root / "memory.json"
    history = json.loads(path.read_text())["history"] if path.exists() else []
    if len(cards) > len(before):  # a run that only read back adds no history
        history.append(
            {
                "command": "python -m ssm_metarl "
                + " ".join(map(shlex.quote, args.argv)),
                "wall_seconds": time.perf_counter() - start,
                "workers": args.workers,
                "units_trained": len(cards) - len(before),
                "units_read_back": len(before),
            }
        )
    card = {
        "tasks": TASKS,
        "variants": VARIANTS,
        "extra": EXTRA,
        "units": [u.name for u in units],
        "run_seconds": sum(c["seconds"] for c in cards),
        "wall_seconds": sum(h["wall_seconds"] for h in history),
        "history": history,
    }
    root.mkdir(parents=True, exist_ok=True)
    save_json(path, card)
    save_json(root / "summary.json", rounded(summarize(root)))
    trained = len(cards) - len(before)
    print(f"{len(cards)} units ({trained} trained) in {root}; summary.json written")
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

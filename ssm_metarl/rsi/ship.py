"""``rsi --ship``: the run's final model written with its card, as one unit.

The card records what a reader needs to trust and repeat the run: the exact command
(any password masked), the settings, every cycle's report, the storage that was used
(journal file, SQLite or PostgreSQL, password masked) and the test gain from the first
cycle to the last. Chapter 5.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

from ..report.stats import bootstrap_ci
from .baseline import spent_env_steps
from .checks import ship_path
from .storage import mask

__all__ = ["ship", "ship_archive", "storage_line"]


def storage_line(agent, workers: int) -> str:
    """What the card's ``storage`` field says: the storage used and who shared it.
    Chapter 5."""
    who = (
        f"shared by {workers} local worker process(es)"
        if workers
        else "used by this process and any rsi-worker started by hand"
    )
    return f"{agent.where.describe()}, {who}"


def ship(agent, args: argparse.Namespace, seconds: float) -> Path:
    """Write the final model and its card (``--ship``); returns the ``.pth`` path.
    Chapter 5."""
    import torch

    out = ship_path(args.ship)
    history = agent.history
    gain = (
        bootstrap_ci(
            [b - a for a, b in zip(history[0].test_returns, history[-1].test_returns)]
        ).to_dict()
        if history
        else None
    )
    card = {
        "name": out.stem,
        "command": "python -m ssm_metarl "
        + " ".join(shlex.quote(mask(a)) for a in args.argv),
        "created_by": "ssm_metarl.cli rsi",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "kind": "StateSpaceModel",
        "model_config": asdict(agent.current_model.config),
        "parameters": sum(p.numel() for p in agent.current_model.parameters()),
        "adaptation_lr": agent.current.inner_lr,
        "initial_model": Path(agent.initial["source"]).name,
        "initial_inner_lr": agent.initial["inner_lr"],
        "rsi_config": agent.config.to_dict(),
        "cycles": len(history),
        "workers": args.workers,
        "storage": storage_line(agent, args.workers),
        "wall_seconds": seconds,
        "halted": agent.halted,
        "accepted_cycles": [r.cycle for r in history if r.accepted is not None],
        "budget_env_steps": agent.config.max_env_steps,
        "train_env_steps": spent_env_steps([r.to_dict() for r in history]),
        "test_gain_first_to_last": gain,
        "history": [r.to_dict() for r in history],
    }
    card["archive"] = ship_archive(agent, out)
    agent.current_model.save(out, extra={"inner_lr": agent.current.inner_lr}, card=card)
    return out


def ship_archive(agent, out: Path) -> list[dict]:
    """Copy every accepted model of the run into the folder ``OUT`` (without
    ``.pth``), so the model in use after any cycle ships too; returns the card's
    ``archive`` list (paths relative to the card). Chapter 5."""
    folder, entries = out.with_suffix(""), []
    folder.mkdir(parents=True, exist_ok=True)
    for entry in agent.archive:
        source = Path(entry["path"])
        target = folder / source.name
        partial = target.with_suffix(".partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)  # atomic: a reader never sees half a model
        entries.append({**entry, "path": f"{folder.name}/{source.name}"})
    return entries

"""Gathering the study into the results store, and the one command that runs it all
(chapters 3-4).

`run_study` trains every unit of the plan (`ssm_metarl.protocol.runner`), scores every
model (`measure`, `retention`, `from_scratch`), and writes `models/results.json` with
`build_store`, recording the command and the wall time of every stage. Each stage
skips what is already on disk, so an interrupted study resumes where it stopped.
Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .plan import (
    BUDGET,
    FAMILIES,
    IN_CONTEXT_STEPS,
    METHODS,
    OUTER_LRS,
    SEEDS,
    TRAIN_INNER_LRS,
    TUNING_SEED,
    Unit,
    in_context_units,
    inner_tuning_units,
    tuning_units,
)

__all__ = ["run_study", "build_store", "replicated_units"]


def replicated_units(root) -> list[Unit]:
    """The replicated goal-family units, at the step sizes their tuning chose
    (chapter 3)."""
    from .runner import best_units

    first = tuning_units()
    best_outer = {k: u.outer_lr for k, u in best_units(root, first).items()}
    best = best_units(root, first + inner_tuning_units(best_outer))
    return [
        Unit("replication", f, m, s, best[f, m].outer_lr, best[f, m].inner_lr)
        for f in FAMILIES
        for m in METHODS
        for s in SEEDS
    ]


def _scratch_calls(root) -> tuple[list[tuple], dict[int, float]]:
    """The PPO races to run, and MAML's support steps on each raced goal."""
    from ..cartpole.rollout import collect
    from ..cartpole.task_sets import task_sets
    from ..meta.evaluation import TEST_SEED
    from ..models.ssm import StateSpaceModel
    from .from_scratch import PPO_SEEDS, ppo_to_match, scratch_goals
    from .measure import measure_unit

    sharp = ("goal_sharp", "maml")
    units = [u for u in replicated_units(root) if (u.family, u.method) == sharp]
    adapted = np.array([measure_unit(u, root)["returns"]["test"]["1"] for u in units])
    tasks = task_sets("goal_sharp")["test"].tasks
    calls, support = [], {}
    for index in scratch_goals():
        support[index] = float(
            np.mean(
                [
                    collect(
                        StateSpaceModel.load(u.path(root)),
                        [tasks[index]],
                        10,
                        seed=TEST_SEED,
                    ).num_steps
                    for u in units
                ]
            )
        )
        target = float(adapted[:, index].mean())
        calls += [
            (ppo_to_match, "goal_sharp", index, s, target, root) for s in PPO_SEEDS
        ]
    return calls, support


def run_study(root, store, workers: int = 2, command: str = "") -> dict:
    """Train, measure and store the whole study; returns the store's document
    (chapter 3)."""
    from .measure import measure_unit
    from .retention import measure_retention
    from .runner import in_processes, run_training

    root, start = Path(root), time.perf_counter()
    tuned = run_training(root, workers, command)
    this_run = {"train": time.perf_counter() - start}
    units = replicated_units(root) + in_context_units()
    maml_sharp = [u for u in units if (u.family, u.method) == ("goal_sharp", "maml")]
    in_processes(
        [(measure_unit, u, root) for u in units]
        + [(measure_retention, u, root) for u in maml_sharp],
        workers,
    )
    this_run["measure"] = time.perf_counter() - start - this_run["train"]
    calls, support = _scratch_calls(root)
    in_processes(calls, workers)
    this_run["from_scratch"] = time.perf_counter() - start - sum(this_run.values())
    document = build_store(root, tuned, support, command, _timing(root, this_run))
    from ..io.atomic import save_json

    save_json(store, document)
    return document


def _timing(root, this_run: dict) -> dict:
    """Wall time of the whole study, resumed parts included: from the start of the
    first training unit to the last file written (file times), and the sum of the
    units' own seconds (the work, whatever the number of workers)."""
    cards = [
        json.loads(p.read_text()) | {"_mtime": p.stat().st_mtime}
        for p in Path(root).rglob("*.json")
        if p.parent.name != "measurements"
    ]
    cards = [c for c in cards if "wall_seconds" in c]
    files = list(Path(root).rglob("*.json"))
    first = min(c["_mtime"] - c["wall_seconds"] for c in cards)
    last = max(p.stat().st_mtime for p in files)
    return {
        "study_wall_seconds": last - first,
        "training_unit_seconds": sum(c["wall_seconds"] for c in cards),
        "this_invocation": this_run,
    }


def _card(unit: Unit, root) -> dict:
    return json.loads(unit.path(root).with_suffix(".json").read_text())


def _rounded(values) -> list:
    return [round(float(v), 3) for v in values]


def build_store(root, tuned: dict, support: dict, command: str, timing: dict) -> dict:
    """The results store's document from the study's cards and measurements
    (chapter 3)."""
    from ..cartpole.task_sets import task_sets
    from .from_scratch import PPO_SEEDS, scratch_goals
    from .measure import STEPS, measure_references, measure_unit
    from .retention import measure_retention

    units = replicated_units(root)
    goal: dict = {}
    for family in FAMILIES:
        goal[family] = {}
        for method in METHODS:
            mine = [u for u in units if (u.family, u.method) == (family, method)]
            cards = [_card(u, root) for u in mine]
            found = [measure_unit(u, root)["returns"] for u in mine]
            goal[family][method] = {
                "seeds": [u.seed for u in mine],
                "outer_lr": mine[0].outer_lr,
                "inner_lr": mine[0].inner_lr,
                "adaptation_lr": [c["adaptation_lr"] for c in cards],
                "env_steps": [c["env_steps"] for c in cards],
                "train_seconds": [c["train_seconds"] for c in cards],
                **{
                    name: {
                        str(k): [_rounded(r[name][str(k)]) for r in found]
                        for k in STEPS
                    }
                    for name in ("test", "held_out")
                },
            }
    sets = {
        family: {
            name: {"description": s.description, "strata": s.strata, "size": len(s)}
            for name, s in task_sets(family).items()
        }
        for family in (*FAMILIES, "flip+physics")
    }
    contexts = [measure_unit(u, root)["returns"] for u in in_context_units()]
    ic_cards = [_card(u, root) for u in in_context_units()]
    flip_sets = task_sets("flip+physics")
    in_context = {
        name: {
            mode: [_rounded(r[name][mode]) for r in contexts]
            for mode in ("greedy", "sampled")
        }
        for name in ("test", "held_out", "default_physics")
    }
    in_context["worlds"] = {
        "test": list(flip_sets["test"].strata["world"]),
        "held_out": list(flip_sets["held_out"].strata["world"]),
        "default_physics": ["normal", "flipped"] * 24,
    }
    in_context.update(
        seeds=list(SEEDS),
        env_steps=[c["env_steps"] for c in ic_cards],
        solved_at_steps=[c["solved_at_steps"] for c in ic_cards],
        train_seconds=[c["train_seconds"] for c in ic_cards],
    )
    retention = [
        measure_retention(u, root)
        for u in units
        if (u.family, u.method) == ("goal_sharp", "maml")
    ]
    from_scratch = [
        json.loads(
            (
                Path(root) / "measurements" / f"scratch_goal_sharp_{i}_{s}.json"
            ).read_text()
        )
        for i in scratch_goals()
        for s in PPO_SEEDS
    ]
    return {
        "study": {
            "command": command,
            "wall_seconds": timing,
            "budget": BUDGET,
            "seeds": list(SEEDS),
            "tuning_seed": TUNING_SEED,
            "outer_lrs": list(OUTER_LRS),
            "train_inner_lrs": list(TRAIN_INNER_LRS),
            "in_context_steps": IN_CONTEXT_STEPS,
            "tuned": tuned,
        },
        "task_sets": sets,
        "goal": goal,
        "references": {f: measure_references(f) for f in FAMILIES},
        "in_context": in_context,
        "retention": retention,
        "from_scratch": {
            "support_steps": {str(k): v for k, v in support.items()},
            "runs": from_scratch,
        },
    }

"""Running the replication study: every training unit of `ssm_metarl.protocol.plan`,
two at a time, each with its card (chapters 3-4).

`train_unit` trains one model and writes `NAME.pth` and its card `NAME.json` under the
study's folder; a unit whose files exist is skipped, so an interrupted run resumes.
`run_training` runs the rounds in order: the outer step sizes, the meta-learners'
inner step sizes, then five seeds of each method at its tuned values, with the
in-context seeds beside the first round. Each model's adaptation step size is chosen
on validation tasks (`ssm_metarl.meta.evaluation.tune_inner_lr`) for every method
alike. Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .plan import (
    BUDGET,
    FAMILIES,
    IN_CONTEXT_STEPS,
    METHODS,
    MODEL,
    Unit,
    in_context_units,
    inner_tuning_units,
    replication_units,
    tuning_units,
)

__all__ = [
    "train_unit",
    "run_units",
    "run_training",
    "read_card",
    "best_units",
    "in_processes",
]

log = logging.getLogger(__name__)


def read_card(unit: Unit, root: Path) -> dict | None:
    """The card of a finished unit, or None if it has not run yet (chapter 3)."""
    path = unit.path(root).with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else None


def _train_meta(unit: Unit) -> tuple:
    import torch

    from ..cartpole.tasks import get_family
    from ..meta.evaluation import tune_inner_lr
    from ..meta.maml_rl import MetaRLConfig, inner_params
    from ..meta.training import meta_train
    from ..models.ssm import StateSpaceModel

    config = MetaRLConfig(
        family=unit.family,
        mode=unit.method,
        inner_lr=unit.inner_lr,
        outer_lr=unit.outer_lr,
        seed=unit.seed,
        **BUDGET,
    )
    torch.manual_seed(unit.seed)  # the same initial weights for every method of a seed
    model = StateSpaceModel(**MODEL)
    result = meta_train(model, config, progress=False)
    lr, scores = tune_inner_lr(
        model,
        get_family(unit.family),
        steps=1,
        episodes=config.episodes,
        seed=unit.seed,
        inner_params=inner_params(unit.method),
    )
    card = {
        "train_config": config.to_dict(),
        "best_epoch": result.best_epoch,
        "best_validation": result.best_validation,
        "skipped_updates": result.skipped_updates,
        "env_steps": result.env_steps,
        "train_seconds": result.total_seconds,
        "adaptation_lr": lr,
        "adaptation_lr_validation": {str(k): v for k, v in scores.items()},
        "validation_score": scores[lr],
        "validation": result.validation,
    }
    return model, card


def _train_in_context(unit: Unit) -> tuple:
    import torch

    from ..adapt.in_context import InContextConfig, train_in_context
    from ..models.ssm import StateSpaceModel

    # a budget of environment steps, not of seconds, so that every seed is reproducible
    config = InContextConfig(
        family=unit.family,
        seed=unit.seed,
        max_env_steps=IN_CONTEXT_STEPS,
        max_seconds=3600.0,
    )
    torch.manual_seed(unit.seed)
    model = StateSpaceModel(**MODEL)
    result = train_in_context(model, config)
    card = {
        "train_config": config.to_dict(),
        "env_steps": int(result.history["env_steps"][-1]),
        "train_seconds": float(result.history["seconds"][-1]),
        "skipped_updates": result.skipped_updates,
        "solved_at_steps": result.solved_at_steps,
        "validation": result.validation,
    }
    return model, card


def train_unit(unit: Unit, root: str | Path, command: str = "") -> dict:
    """Train `unit`, write `NAME.pth` and its card under `root`, return the card; a
    unit that already ran returns its card without training again (chapter 3)."""
    import torch

    root = Path(root)
    done = read_card(unit, root)
    if done is not None:
        return done
    torch.set_num_threads(1)
    start = time.perf_counter()
    train = _train_in_context if unit.kind == "in_context" else _train_meta
    model, card = train(unit)
    card = {
        "name": unit.name,
        "unit": unit.to_dict(),
        "command": command,
        "threads": 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "kind": "StateSpaceModel",
        "model_config": MODEL,
        "parameters": sum(p.numel() for p in model.parameters()),
        **card,
        "wall_seconds": time.perf_counter() - start,
    }
    unit.path(root).parent.mkdir(parents=True, exist_ok=True)
    model.save(unit.path(root), extra={"unit": unit.to_dict()}, card=card)
    log.info("%s: %.0f s", unit.name, card["wall_seconds"])
    return card


def in_processes(calls: list[tuple], workers: int = 2) -> list:
    """`fn(*args)` for every `(fn, *args)` in `calls`, in `workers` fresh processes
    (spawned, so no torch state is shared), results in order (chapter 3)."""
    if workers <= 1:
        return [fn(*args) for fn, *args in calls]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        jobs = [pool.submit(fn, *args) for fn, *args in calls]
        return [job.result() for job in jobs]


def run_units(units: list[Unit], root, workers: int = 2, command: str = "") -> list:
    """Train `units` in `workers` processes (one torch thread each); their cards
    (chapter 3)."""
    return in_processes([(train_unit, u, root, command) for u in units], workers)


def best_units(root, units: list[Unit]) -> dict[tuple[str, str], Unit]:
    """For every (family, method), the tuning unit with the best validation score
    (the return after one step at the model's own best adaptation step size).
    Chapter 3."""
    best: dict[tuple[str, str], tuple[float, Unit]] = {}
    for unit in units:
        score = read_card(unit, root)["validation_score"]
        key = (unit.family, unit.method)
        if key not in best or score > best[key][0]:
            best[key] = (score, unit)
    return {key: unit for key, (_, unit) in best.items()}


def run_training(root, workers: int = 2, command: str = "") -> dict:
    """Every training round of the study, in order; returns the tuned step sizes.

    Round 1: outer step sizes (and the in-context seeds); round 2: inner step sizes of
    the meta-learners at their best outer one; round 3: five seeds of every method.
    Chapter 3.
    """
    first = tuning_units()
    run_units(first + in_context_units(), root, workers, command)
    best_outer = {k: u.outer_lr for k, u in best_units(root, first).items()}
    second = inner_tuning_units(best_outer)
    run_units(second, root, workers, command)
    best = best_units(root, first + second)
    run_units(replication_units(best), root, workers, command)
    return {
        f"{family}/{method}": {
            "outer_lr": best[family, method].outer_lr,
            "inner_lr": best[family, method].inner_lr,
        }
        for family in FAMILIES
        for method in METHODS
    }

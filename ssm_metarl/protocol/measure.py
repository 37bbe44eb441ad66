"""Scoring the study's models on the named task sets, run by run (chapters 3-4).

Every replicated model is adapted to every task of a family's test and held-out sets
with the same protocol: 10 support episodes, k = 0, 1 or 3 policy-gradient steps at the
step size chosen for that model on validation tasks, then 10 fresh episodes with
sampled actions. The start states and the sampled actions are the same for every model
(seed `ssm_metarl.meta.evaluation.TEST_SEED`), so methods differ only by their weights.
The in-context policies are scored with no gradient step, greedy and sampled. Results
are per task, one file per model, gathered by `ssm_metarl.protocol.store`. Taught in
chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .plan import Unit

__all__ = [
    "STEPS",
    "EPISODES",
    "measure_unit",
    "measure_references",
    "per_task_returns",
    "measurement_path",
]

#: Adaptation steps every model is scored after.
STEPS = (0, 1, 3)
#: Support episodes per task, and fresh episodes per task to score.
EPISODES = 10
#: The sets results are reported on (validation only chooses).
REPORTED = ("test", "held_out")


def measurement_path(unit: Unit, root) -> Path:
    """Where a unit's measurement is cached (chapter 3)."""
    return Path(root) / "measurements" / f"{Path(unit.name).name}.json"


def per_task_returns(policy, tasks, episodes: int, seed: int, greedy=False):
    """Mean return of `episodes` episodes of every task: (n_tasks,) numpy
    (chapter 3)."""
    from ..cartpole.rollout import collect

    traj = collect(policy, list(tasks), episodes, seed=seed, greedy=greedy)
    return traj.returns.reshape(len(tasks), episodes).mean(1).double().numpy()


def _measure_goal(model, unit: Unit, card: dict, sets) -> dict:
    from ..meta.evaluation import TEST_SEED, evaluate_adaptation
    from ..meta.maml_rl import inner_params

    out = {}
    for name in REPORTED:
        result = evaluate_adaptation(
            model,
            sets[name].tasks,
            steps=STEPS,
            episodes=EPISODES,
            eval_episodes=EPISODES,
            inner_lr=card["adaptation_lr"],
            seed=TEST_SEED,
            inner_params=inner_params(unit.method),
        )
        out[name] = {str(k): [float(v) for v in result.returns[k]] for k in STEPS}
    return out


def _measure_in_context(model, sets) -> dict:
    from ..cartpole.tasks import CartPoleTask
    from ..meta.evaluation import TEST_SEED

    # both worlds at the default physics: among the tasks training selected its
    # weights on, so reported as validation, never as held out
    default = [CartPoleTask(flip=f) for f in (False, True)] * 24
    sets = {**{name: sets[name] for name in REPORTED}, "default_physics": default}
    return {
        name: {
            mode: [
                float(v)
                for v in per_task_returns(
                    model,
                    getattr(sets[name], "tasks", sets[name]),
                    5,
                    seed=TEST_SEED + 1,
                    greedy=(mode == "greedy"),
                )
            ]
            for mode in ("greedy", "sampled")
        }
        for name in sets
    }


def measure_unit(unit: Unit, root) -> dict:
    """Score one replicated model on its family's test and held-out sets; cached in
    `root/measurements/NAME.json` (a unit measured before is read back). Chapter 3."""
    import torch

    from ..cartpole.task_sets import task_sets
    from ..io.atomic import save_json
    from ..models.ssm import StateSpaceModel

    path = measurement_path(unit, root)
    if path.exists():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    card = json.loads(unit.path(root).with_suffix(".json").read_text())
    model = StateSpaceModel.load(unit.path(root))
    sets = task_sets(unit.family)
    if unit.kind == "in_context":
        returns = _measure_in_context(model, sets)
    else:
        returns = _measure_goal(model, unit, card, sets)
    result = {
        "unit": unit.to_dict(),
        "adaptation_lr": card.get("adaptation_lr"),
        "returns": returns,
    }
    save_json(path, result)
    return result


def measure_references(family: str) -> dict:
    """The oracle (told the goal) and the goal-blind controller on the family's test
    and held-out sets, per task (10 episodes each, the models' scoring seed).
    Chapter 4."""
    from ..cartpole.task_sets import task_sets
    from ..meta.evaluation import TEST_SEED
    from ..models.controllers import GoalController

    sets, out = task_sets(family), {}
    for name in REPORTED:
        tasks = sets[name].tasks
        goals = np.repeat([t.goal for t in tasks], EPISODES)
        out[name] = {
            label: [
                float(v)
                for v in per_task_returns(
                    controller, tasks, EPISODES, seed=TEST_SEED + 1
                )
            ]
            for label, controller in (
                ("oracle", GoalController(goals)),
                ("goal-blind", GoalController()),
            )
        }
    return out

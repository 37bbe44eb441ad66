"""How chapter 6's strong protocol scores one replicated model under one setting:
exactly as the study scores it (:mod:`ssm_metarl.protocol.measure`).

A setting (`Setting`) is a kind of adaptation (none, standard, hybrid), a number of
policy-gradient steps and a step size (the model's tuned one, or a fixed one such as
the card's 0.01). `score_run` adapts one of the replicated models
(``models/replication/goal_{method}_seed{run}.pth``) to every test task of the ``goal``
family on 10 support episodes (seed ``TEST_SEED``) and scores 10 fresh sampled episodes
per task (seed ``TEST_SEED + 1``): standard steps through the study's own
`evaluate_adaptation`, hybrid steps through chapter 4's `HybridAdapter` on the same
support episodes, with replay (weight 0.5) of the model's own episodes on training
tasks. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..adapt.adapters import HybridAdaptationConfig, HybridAdapter
from ..adapt.buffer import ExperienceBuffer
from ..cartpole import rollout
from ..cartpole.task_sets import task_sets
from ..cartpole.tasks import get_family
from ..io.artifacts import artifact_path, load_card
from ..meta.evaluation import TEST_SEED, evaluate_adaptation
from ..meta.maml_rl import inner_params
from ..models.policy import SSMPolicy, TaskBatchedPolicy
from ..models.ssm import StateSpaceModel
from ..protocol.measure import EPISODES, per_task_returns
from .scoring import random_model

__all__ = [
    "FAMILY",
    "RUNS",
    "REPLAY_WEIGHT",
    "Setting",
    "strong_tasks",
    "load_run",
    "replay_buffer",
    "score_random",
    "score_run",
]

#: The task family and the replicated runs per method the strong protocol scores.
FAMILY = "goal"
RUNS = 5
#: Weight of the hybrid adapter's replay loss (the card protocol's).
REPLAY_WEIGHT = 0.5


@dataclass(frozen=True)
class Setting:
    """One adaptation setting of chapter 6's strong protocol: `kind` ("none",
    "standard" or "hybrid"), `steps` policy-gradient steps, step size `lr` (None: the
    model's tuned step size, its card's ``adaptation_lr``)."""

    kind: str
    steps: int = 0
    lr: float | None = None

    def to_dict(self, method: str) -> dict:
        """The setting as the JSON stores it, with the agent's `method`."""
        lr = None if self.kind == "none" else ("tuned" if self.lr is None else self.lr)
        return {"method": method, "kind": self.kind, "steps": self.steps, "lr": lr}


def strong_tasks(n_tasks: int | None = None) -> list:
    """The first `n_tasks` (default: all 48) test tasks of the ``goal`` family, in the
    study's order (chapter 6)."""
    tasks = list(task_sets(FAMILY)["test"].tasks)
    return tasks if n_tasks is None else tasks[:n_tasks]


def load_run(method: str, run: int) -> tuple[StateSpaceModel, dict]:
    """Replicated model `run` of `method` ("maml", "anil", "multitask") and its card
    (chapter 6)."""
    name = f"replication/{FAMILY}_{method}_seed{run}"
    return StateSpaceModel.load(artifact_path(name + ".pth")), load_card(name)


def replay_buffer(model, seed: int = 0) -> ExperienceBuffer:
    """The hybrid adapter's replay: 2 episodes of `model` on each of the family's first
    32 training tasks (chapter 6). Built afresh for every adaptation, so a row's
    numbers never depend on the rows scored before it."""
    buffer = ExperienceBuffer(capacity=256, seed=seed)
    train = list(get_family(FAMILY).train)[:32]
    buffer.add(rollout.collect(model, train, 2, seed=seed + 7))
    return buffer


def score_random(tasks) -> np.ndarray:
    """The random policy's per-task returns on `tasks`, the models' scoring episodes
    (chapter 6)."""
    return per_task_returns(random_model(), tasks, EPISODES, seed=TEST_SEED + 1)


def score_run(model, card: dict, method: str, settings, tasks) -> dict:
    """Per-task returns of one replicated model under each of `settings` on `tasks`,
    scored as the study scores (chapter 6).

    Returns ``{"returns": {setting: (n_tasks,) array}, "support_steps": mean env steps
    of a task's support episodes, "refused": tasks the hybrid adapter's update guard
    refused}``.
    """
    base, tuned = SSMPolicy(model), float(card["adaptation_lr"])
    by_lr: dict[float, list[Setting]] = {}
    for s in settings:
        if s.kind in ("none", "standard"):
            by_lr.setdefault(tuned if s.lr is None else s.lr, []).append(s)
    returns, refused = {}, 0
    for lr, group in by_lr.items():
        # the study's scorer: steps taken in order, each k scored on fresh episodes
        result = evaluate_adaptation(
            model,
            tasks,
            steps=sorted({s.steps for s in group}),
            episodes=EPISODES,
            eval_episodes=EPISODES,
            inner_lr=lr,
            seed=TEST_SEED,
            inner_params=inner_params(method),
        )
        returns.update({s: result.returns[s.steps] for s in group})
    # the support episodes evaluate_adaptation adapts on (same call, same seed)
    support = rollout.collect(base, tasks, EPISODES, seed=TEST_SEED)
    for s in settings:
        if s.kind != "hybrid":
            continue
        if method == "anil":
            raise ValueError("the hybrid adapter adapts every weight: not ANIL's head")
        config = HybridAdaptationConfig(
            lr=tuned if s.lr is None else s.lr,
            steps=s.steps,
            experience_weight=REPLAY_WEIGHT,
        )
        adapter = HybridAdapter(base, config, replay_buffer(model))
        policy = TaskBatchedPolicy(base, adapter.adapt_params(support))
        returns[s] = per_task_returns(policy, tasks, EPISODES, seed=TEST_SEED + 1)
        refused += adapter.last_refused
    steps = support.lengths.double().reshape(len(tasks), EPISODES).sum(1).mean()
    return {"returns": returns, "support_steps": float(steps), "refused": refused}

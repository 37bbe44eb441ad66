"""Which tasks a training batch plays, and the batch itself.

A loop's iteration plays `episodes_per_iter` episodes: `episodes_per_iter /
episodes_per_task` tasks, `episodes_per_task` episodes of each. The tasks come either in
the given order (`tasks_in_order`: all of them when they fit, else the next ones in
turn) or at random with half of them from each flip world (`stratified_tasks`).
Chapter 4's in-context policy needs the second: with both worlds in every batch and
several episodes per task, a per-task balanced loss compares episodes of the same task.
Taught in chapter 2 (`book/02_cartpole_tasks.md`); sampling by world in chapter 4.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..cartpole.rollout import collect
from ..cartpole.tasks import CartPoleTask
from ..cartpole.trajectories import Trajectories

__all__ = ["tasks_in_order", "stratified_tasks", "play_batch", "world_returns"]


def tasks_in_order(
    tasks: Sequence[CartPoleTask], n: int, iteration: int, per_task: int = 1
) -> tuple[list[CartPoleTask], int]:
    """Spread `n` episodes over the tasks, `per_task` episodes each, rotating through
    the tasks in their order when there are more tasks than the batch holds. Returns
    the batch's tasks and the episodes of each. Defined in chapter 2."""
    tasks, k = list(tasks), n // per_task
    if len(tasks) >= k:
        start = (iteration * k) % len(tasks)
        return [tasks[(start + i) % len(tasks)] for i in range(k)], per_task
    if n % len(tasks):
        raise ValueError(
            f"episodes_per_iter={n} must be a multiple of the number of tasks "
            f"({len(tasks)})"
        )
    return tasks, n // len(tasks)


def stratified_tasks(tasks, n: int, rng: np.random.Generator) -> list[CartPoleTask]:
    """`n` tasks drawn at random, half from the normal world and half from the flipped
    one. Defined in chapter 4."""
    normal, flipped = [t for t in tasks if not t.flip], [t for t in tasks if t.flip]
    if not normal or not flipped:
        raise ValueError("stratified_tasks needs tasks of both flip worlds")
    return [normal[i] for i in rng.integers(len(normal), size=n // 2)] + [
        flipped[i] for i in rng.integers(len(flipped), size=n // 2)
    ]


def play_batch(
    policy, tasks, cfg, seed: int, iteration: int, rng: np.random.Generator
) -> tuple[Trajectories, int | None]:
    """The iteration's batch of episodes (tasks chosen by `cfg.task_sampling`, `rng`
    used only by "by_world"), and `n_tasks` for balancing (None: every step weighs the
    same). Defined in chapter 2."""
    if cfg.task_sampling == "by_world":
        per_task = cfg.episodes_per_task
        batch = stratified_tasks(tasks, cfg.episodes_per_iter // per_task, rng)
    else:
        batch, per_task = tasks_in_order(
            tasks, cfg.episodes_per_iter, iteration, cfg.episodes_per_task
        )
    traj = collect(policy, batch, per_task, seed=seed * 100_003 + iteration)
    return traj, (len(traj.tasks) if cfg.balance_tasks else None)


def world_returns(traj: Trajectories, cfg) -> dict[str, float]:
    """Each flip world's mean return in a batch sampled "by_world" (nothing otherwise):
    the columns a by-world training log adds. Defined in chapter 4."""
    if cfg.task_sampling != "by_world":
        return {}
    flips = np.repeat([t.flip for t in traj.tasks], traj.episodes_per_task)
    returns = traj.returns.numpy()
    return {
        "normal_return": float(returns[~flips].mean()),
        "flipped_return": float(returns[flips].mean()),
    }

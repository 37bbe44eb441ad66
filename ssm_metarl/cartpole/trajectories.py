"""A batch of CartPole episodes, padded to the longest one: what `collect` returns.

`Trajectories` holds the observations, actions, rewards, step mask and the acting
policy's log-probabilities of N episodes, task-major, with the tasks they played.
Losses, MAML and the adapters read episodes through it. Taught in chapter 2
(`book/02_cartpole_tasks.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tasks import CartPoleTask

__all__ = ["Trajectories"]


@dataclass
class Trajectories:
    """A batch of episodes, padded to the longest one. Episode `i` played
    `tasks[task_index[i]]`.

    Episodes are task-major: episode `i` belongs to task `i // episodes_per_task`.
    `mask[i, t]` is True when step `t` was played; padded steps hold zeros.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    obs: torch.Tensor  # (N, T, 4) float32: the observation the action was chosen from
    actions: torch.Tensor  # (N, T) int64
    rewards: torch.Tensor  # (N, T) float32, 0 where mask is False
    # (N, T) bool: the step was played (the agent was alive before it)
    mask: torch.Tensor
    # (N, T) float32: log pi(a_t | history) of the acting policy, 0 on padding
    log_probs: torch.Tensor
    # (N,) bool: ended by falling (True) or by the time limit / not at all (False)
    terminated: torch.Tensor
    task_index: torch.Tensor  # (N,) int64 into `tasks`
    tasks: tuple[CartPoleTask, ...]
    episodes_per_task: int

    @property
    def returns(self) -> torch.Tensor:
        """(N,) undiscounted episode returns."""
        return self.rewards.sum(dim=1)

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) number of steps played in each episode."""
        return self.mask.sum(dim=1)

    @property
    def num_steps(self) -> int:
        """Environment steps in the whole batch (padding excluded)."""
        return int(self.mask.sum())

    def for_task(self, k: int) -> "Trajectories":
        """The episodes of task `k` only (a view; the padding is kept)."""
        s = slice(k * self.episodes_per_task, (k + 1) * self.episodes_per_task)
        return Trajectories(
            self.obs[s],
            self.actions[s],
            self.rewards[s],
            self.mask[s],
            self.log_probs[s],
            self.terminated[s],
            self.task_index[s] - k,
            (self.tasks[k],),
            self.episodes_per_task,
        )

    def to_dict(self) -> dict:
        """A JSON-ready summary (not the tensors)."""
        return {
            "episodes": int(self.obs.shape[0]),
            "tasks": len(self.tasks),
            "episodes_per_task": self.episodes_per_task,
            "steps": self.num_steps,
            "mean_return": float(self.returns.mean()),
        }

"""Fixed controllers for the goal families: the oracle told the goal, and the same rule
aimed at the centre (chapters 3-4).

They are the yardsticks of every goal result: the oracle shows what knowing the goal
earns, the goal-blind rule what ignoring it earns. Taught in chapter 4
(`book/04_test_time_adaptation.md`).
"""

from __future__ import annotations

import torch

__all__ = ["GoalController"]


class GoalController:
    """a = [0.2 clip(x - g, ±clip) + 0.2 ẋ + θ + 0.3 θ̇ > 0], one goal g per
    episode.

    `goals=None` aims at the centre (goal-blind). The position error is clipped so that
    the cart moves towards a far goal without the pole falling. Defined in chapter 4.
    """

    def __init__(self, goals=None, clip: float = 0.5):
        self.goals = (
            None if goals is None else torch.as_tensor(goals, dtype=torch.float32)
        )
        self.clip = clip

    def init_hidden(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 0)

    def __call__(self, obs: torch.Tensor, hidden: torch.Tensor):
        error = obs[:, 0] - (0.0 if self.goals is None else self.goals)
        x = error.clamp(-self.clip, self.clip)
        score = 0.2 * x + 0.2 * obs[:, 1] + obs[:, 2] + 0.3 * obs[:, 3]
        return torch.stack([torch.zeros_like(score), 1e3 * score], dim=-1), hidden

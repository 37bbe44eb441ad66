"""How fast batched rollouts play: the model card's naive loop against `collect`.

`naive_rollout` plays as the model card does (one Gymnasium environment, a batch-1
forward per step); `rollout_rates` times it against `collect` at several batch sizes in
interleaved rounds, and `RolloutRates` gives steps per second and speed-ups with CIs.
Taught in chapter 2 (`book/02_cartpole_tasks.md`); `python -m ssm_metarl bench rollout`
runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.policy import as_policy, select_actions
from ..report.stats import Estimate, bootstrap_ci
from ..report.timing import time_rounds
from .rollout import collect
from .tasks import CartPoleTask

__all__ = ["naive_rollout", "RolloutRates", "rollout_rates"]


@torch.no_grad()
def naive_rollout(model, steps: int = 500, seed: int = 0) -> int:
    """The model card's way of playing, for timing against `collect`: one
    `gym.make("CartPole-v1")` environment and one batch-1 forward per step, actions
    sampled, for `steps` steps (episodes restart as they end). Returns the steps played.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    import gymnasium as gym

    policy = as_policy(model)
    env, generator = gym.make("CartPole-v1"), torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    hidden, prev_action, prev_reward = (
        policy.initial_state(1),
        torch.full((1,), -1),
        torch.zeros(1),
    )
    for _ in range(steps):
        out, hidden = policy.step(
            torch.as_tensor(obs).unsqueeze(0), prev_action, prev_reward, hidden
        )
        prev_action = select_actions(out, False, generator)
        obs, reward, terminated, truncated, _ = env.step(int(prev_action))
        prev_reward = torch.tensor([float(reward)])
        if terminated or truncated:
            obs, _ = env.reset()
            hidden, prev_action, prev_reward = (
                policy.initial_state(1),
                torch.full((1,), -1),
                torch.zeros(1),
            )
    env.close()
    return steps


@dataclass
class RolloutRates:
    """Environment steps per second of `naive_rollout` and of `collect` at several batch
    sizes, timed in interleaved rounds by `rollout_rates`. Defined in chapter 2
    (`02_cartpole_tasks`)."""

    sizes: list[int]  # N, the episodes collect() steps together
    naive_steps: int  # steps the naive loop plays per round
    # steps collect() played at each N (finished episodes do not count)
    played: dict[int, int]
    seconds: dict  # "naive" or N -> wall seconds of each round

    def rate(self, name) -> float:
        """Steps per second of `"naive"` or of `collect` at N = `name`, in its least
        disturbed round."""
        steps = self.naive_steps if name == "naive" else self.played[name]
        return steps / min(self.seconds[name])

    def speedup(self, n: int) -> Estimate:
        """How many times more steps per second `collect` at N = `n` plays than the
        naive loop:
        the mean of the per-round ratios, with a 95% bootstrap CI over rounds."""
        return bootstrap_ci(
            [
                (self.played[n] / batched) / (self.naive_steps / naive)
                for batched, naive in zip(self.seconds[n], self.seconds["naive"])
            ]
        )


def rollout_rates(
    model,
    sizes=(1, 16, 128, 1024),
    naive_steps: int = 500,
    rounds: int = 3,
    seed: int = 0,
    max_steps: int | None = 200,
    task: CartPoleTask | None = None,
) -> RolloutRates:
    """Time `naive_rollout` (`naive_steps` steps) against `collect` with N episodes at
    once for each N in `sizes` (episodes capped at `max_steps`), the variants taking
    turns in each of `rounds` rounds. Use a policy whose episodes run long (e.g.
    `ssm_metarl.models.ssm.balancing_ssm`), as a trained one's do. Defined in chapter 2
    (`02_cartpole_tasks`).
    """
    task = task or CartPoleTask()
    played = {
        n: collect(model, [task], n, seed=seed, max_steps=max_steps).num_steps
        for n in sizes
    }
    variants = {"naive": lambda: naive_rollout(model, naive_steps, seed)}
    variants.update(
        {
            n: (lambda n=n: collect(model, [task], n, seed=seed, max_steps=max_steps))
            for n in sizes
        }
    )
    return RolloutRates(
        list(sizes), naive_steps, played, time_rounds(variants, rounds=rounds, warmup=0)
    )

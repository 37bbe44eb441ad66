"""Batched rollouts: many episodes of many CartPole tasks at once, one policy forward
per step.

`collect` plays `episodes_per_task` episodes of every task in one vectorised Gymnasium
environment (`ssm_metarl.cartpole.envs.CartPoleTaskVectorEnv`) and returns a
`Trajectories` batch (see `trajectories`). `evaluate` scores a policy with a bootstrap
CI, either on the vectorised simulator or on real single Gymnasium environments
(`backend="gymnasium"`). `rollout_speed` times `collect` against the card's naive loop.

A policy is anything `ssm_metarl.models.policy.as_policy` accepts: a
`ssm_metarl.models.policy.Policy` (`ssm_metarl.models.policy.LinearPolicy`, an SSM, RL^2
or task-batched policy), a `ssm_metarl.StateSpaceModel`, or a function `f(obs, hidden)`
with `init_hidden`. Every step, a policy is given the observation, its previous action
and the previous reward.

Taught in chapter 2 (`book/02_cartpole_tasks.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..io.validation import check_int
from ..models.policy import N_ACTIONS, LinearPolicy, as_policy, select_actions
from ..report.stats import Estimate, bootstrap_ci
from .envs import make_env, make_vector_env
from .tasks import CartPoleTask
from .trajectories import Trajectories

__all__ = [
    "collect",
    "evaluate",
    "EvalResult",
    "LinearPolicy",
    "select_actions",
]  # the last three live in .trajectories and ssm_metarl.models.policy


def _expand(
    tasks: Sequence[CartPoleTask], episodes_per_task: int
) -> list[CartPoleTask]:
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, CartPoleTask) for t in tasks):
        raise ValueError("tasks must be a non-empty sequence of CartPoleTask")
    check_int("episodes_per_task", episodes_per_task)
    return [t for t in tasks for _ in range(episodes_per_task)]


@torch.no_grad()
def collect(
    policy: Callable,
    tasks: Sequence[CartPoleTask],
    episodes_per_task: int = 1,
    seed: int = 0,
    max_steps: int | None = None,
    greedy: bool = False,
    init_hidden=None,
) -> Trajectories:
    """Play `episodes_per_task` episodes of every task, all at once; return them as
    `Trajectories`.

    One vectorised Gymnasium environment steps all N = len(tasks) * episodes_per_task
    episodes, and the policy runs once per time step on the whole (N, 4) batch. `seed`
    fixes the start states (`reset(seed=seed)`) and the sampled actions (a
    `torch.Generator`). `max_steps` caps every episode (default: each task's own
    `max_steps`). Runs without gradients; see
    `ssm_metarl.models.policy.policy_log_probs` to recompute differentiable
    log-probabilities. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    episode_tasks = _expand(tasks, episodes_per_task)
    n = len(episode_tasks)
    limits = np.array(
        [
            t.max_steps if max_steps is None else min(t.max_steps, max_steps)
            for t in episode_tasks
        ]
    )
    horizon = int(limits.max())
    env = make_vector_env(episode_tasks, max_episode_steps=horizon)
    generator = torch.Generator().manual_seed(seed)
    obs_np, _ = env.reset(seed=seed)
    policy = as_policy(policy, init_hidden)
    hidden = policy.initial_state(n)
    prev_action, prev_reward = torch.full((n,), -1, dtype=torch.int64), torch.zeros(n)

    obs_buf = np.zeros((n, horizon, 4), dtype=np.float32)
    act_buf = np.zeros((n, horizon), dtype=np.int64)
    rew_buf = np.zeros((n, horizon), dtype=np.float32)
    logp_buf = np.zeros((n, horizon), dtype=np.float32)
    mask_buf = np.zeros((n, horizon), dtype=bool)
    terminated_at_end = np.zeros(n, dtype=bool)
    alive = np.ones(n, dtype=bool)
    steps = 0
    for t in range(horizon):
        outputs, hidden = policy.step(
            torch.from_numpy(obs_np), prev_action, prev_reward, hidden
        )
        actions = select_actions(outputs, greedy, generator)
        log_p = (
            torch.log_softmax(outputs[:, :N_ACTIONS], dim=1)
            .gather(1, actions[:, None])
            .squeeze(1)
        )
        obs_buf[:, t], act_buf[:, t], logp_buf[:, t], mask_buf[:, t] = (
            obs_np,
            actions.numpy(),
            log_p.numpy(),
            alive,
        )
        obs_np, rew_buf[:, t], terminated, truncated, _ = env.step(actions.numpy())
        # float32, as stored
        prev_action, prev_reward = actions, torch.from_numpy(rew_buf[:, t].copy())
        terminated_at_end |= alive & terminated
        alive = alive & ~terminated & ~truncated & (t + 1 < limits)
        steps = t + 1
        if not alive.any():
            break
    env.close()
    # Steps after an episode ended hold whatever the auto-resetting environment did:
    # zero them.
    mask = mask_buf[:, :steps]
    return Trajectories(
        obs=torch.from_numpy(obs_buf[:, :steps] * mask[..., None]),
        actions=torch.from_numpy(act_buf[:, :steps] * mask),
        rewards=torch.from_numpy(rew_buf[:, :steps] * mask),
        mask=torch.from_numpy(mask),
        log_probs=torch.from_numpy(logp_buf[:, :steps] * mask),
        terminated=torch.from_numpy(terminated_at_end),
        task_index=torch.arange(n) // episodes_per_task,
        tasks=tuple(tasks),
        episodes_per_task=episodes_per_task,
    )


@dataclass
class EvalResult:
    """Returns of an evaluation: one per episode (task-major), their mean and 95%
    bootstrap CI.

    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    returns: np.ndarray  # (n_tasks * episodes,)
    ci: Estimate
    episodes_per_task: int
    backend: str
    greedy: bool

    @property
    def mean(self) -> float:
        return self.ci.mean

    @property
    def per_task(self) -> np.ndarray:
        """Mean return of each task."""
        return self.returns.reshape(-1, self.episodes_per_task).mean(axis=1)

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "ci": self.ci.to_dict(),
            "returns": [float(r) for r in self.returns],
            "episodes_per_task": self.episodes_per_task,
            "backend": self.backend,
            "greedy": self.greedy,
        }

    def __str__(self) -> str:
        return f"{self.ci} over {self.returns.size} episodes"


@torch.no_grad()
def _gymnasium_returns(
    policy, episode_tasks, seed, max_steps, greedy, init_hidden
) -> np.ndarray:
    """Play each episode in its own real Gymnasium env (`make_env`), batching only the
    policy."""
    envs = [
        make_env(
            t
            if max_steps is None
            else CartPoleTask(
                **{**t.to_dict(), "max_steps": min(t.max_steps, max_steps)}
            )
        )
        for t in episode_tasks
    ]
    n = len(envs)
    generator = torch.Generator().manual_seed(seed)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    policy = as_policy(policy, init_hidden)
    hidden = policy.initial_state(n)
    returns, alive = np.zeros(n), np.ones(n, dtype=bool)
    prev_action, prev_reward = torch.full((n,), -1, dtype=torch.int64), torch.zeros(n)
    while alive.any():
        outputs, hidden = policy.step(
            torch.from_numpy(obs), prev_action, prev_reward, hidden
        )
        actions = select_actions(outputs, greedy, generator)
        prev_reward = torch.zeros(n)
        for i in np.flatnonzero(alive):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            returns[i] += reward
            prev_reward[i] = reward
            alive[i] = not (terminated or truncated)
        prev_action = actions
    for env in envs:
        env.close()
    return returns


def evaluate(
    policy: Callable,
    tasks: Sequence[CartPoleTask],
    episodes: int = 10,
    seed: int = 0,
    greedy: bool = True,
    backend: str = "vector",
    max_steps: int | None = None,
    init_hidden=None,
) -> EvalResult:
    """Mean return of `policy` over `episodes` episodes per task, with a 95% bootstrap
    CI.

    `backend="vector"` uses `collect`; `backend="gymnasium"` plays every episode in a
    real `gym.make` environment (episode `i` resets with `seed + i`), the check used for
    "solved" claims. `greedy=True` takes the argmax action, as the model card does.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    if backend == "vector":
        traj = collect(
            policy,
            tasks,
            episodes,
            seed=seed,
            max_steps=max_steps,
            greedy=greedy,
            init_hidden=init_hidden,
        )
        returns = traj.returns.double().numpy()
    elif backend == "gymnasium":
        returns = _gymnasium_returns(
            policy, _expand(tasks, episodes), seed, max_steps, greedy, init_hidden
        )
    else:
        raise ValueError(
            f"unknown backend {backend!r}; valid choices: 'vector', 'gymnasium'"
        )
    return EvalResult(
        returns=returns,
        ci=bootstrap_ci(returns, seed=seed),
        episodes_per_task=episodes,
        backend=backend,
        greedy=greedy,
    )

"""Batched rollouts: many episodes of many CartPole tasks at once, one policy forward
per step.

`collect` plays `episodes_per_task` episodes of every task in one vectorised Gymnasium
environment (`ssm_metarl.cartpole.envs.CartPoleTaskVectorEnv`) and returns a
`Trajectories` batch. `evaluate` scores a policy with a bootstrap CI, either on the
vectorised simulator or on real single Gymnasium environments (`backend="gymnasium"`).

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
from ..report.timing import time_rounds
from .envs import make_env, make_vector_env
from .tasks import CartPoleTask

__all__ = [
    "Trajectories",
    "EvalResult",
    "collect",
    "evaluate",
    "naive_rollout",
    "RolloutRates",
    "rollout_rates",
    "LinearPolicy",
    "select_actions",
]  # the last two live in ssm_metarl.models.policy


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

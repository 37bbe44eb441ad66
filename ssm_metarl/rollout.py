"""Batched rollouts: many episodes of many CartPole tasks at once, one policy forward per step.

:func:`collect` plays ``episodes_per_task`` episodes of every task in one vectorised
Gymnasium environment (:class:`ssm_metarl.tasks.CartPoleTaskVectorEnv`) and returns a
:class:`Trajectories` batch. :func:`evaluate` scores a policy with a bootstrap CI, either on
the vectorised simulator or on real single Gymnasium environments (``backend="gymnasium"``).

A *policy* is anything callable as ``policy(obs (N, 4), hidden) -> (outputs (N, >=2), hidden)``
whose first two outputs are action logits: a :class:`~ssm_metarl.StateSpaceModel`, a
:class:`LinearPolicy`, or a function (e.g. ``torch.func.functional_call`` with MAML's adapted
weights) together with an ``init_hidden`` argument.

Taught in chapter 2 (``book/02_cartpole_tasks.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .stats import Estimate, bootstrap_ci
from .tasks import CartPoleTask, make_env, make_vector_env

__all__ = ["Trajectories", "EvalResult", "LinearPolicy", "collect", "evaluate", "select_actions", "initial_hidden"]

N_ACTIONS = 2  # CartPole: push left (0) or right (1); the policy's logits are outputs[..., :2]


@dataclass
class Trajectories:
    """A batch of episodes, padded to the longest one. Episode ``i`` played ``tasks[task_index[i]]``.

    Episodes are task-major: episode ``i`` belongs to task ``i // episodes_per_task``.
    ``mask[i, t]`` is True when step ``t`` was played; padded steps hold zeros.
    Defined in chapter 2 (``02_cartpole_tasks``).
    """

    obs: torch.Tensor  # (N, T, 4) float32: the observation the action was chosen from
    actions: torch.Tensor  # (N, T) int64
    rewards: torch.Tensor  # (N, T) float32, 0 where mask is False
    mask: torch.Tensor  # (N, T) bool: the step was played (the agent was alive before it)
    log_probs: torch.Tensor  # (N, T) float32: log pi(a_t | history) of the acting policy, 0 on padding
    terminated: torch.Tensor  # (N,) bool: ended by falling (True) or by the time limit / not at all (False)
    task_index: torch.Tensor  # (N,) int64 into ``tasks``
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
        """The episodes of task ``k`` only (a view; the padding is kept)."""
        s = slice(k * self.episodes_per_task, (k + 1) * self.episodes_per_task)
        return Trajectories(self.obs[s], self.actions[s], self.rewards[s], self.mask[s], self.log_probs[s], self.terminated[s],
                            self.task_index[s] - k, (self.tasks[k],), self.episodes_per_task)

    def to_dict(self) -> dict:
        """A JSON-ready summary (not the tensors)."""
        return {"episodes": int(self.obs.shape[0]), "tasks": len(self.tasks), "episodes_per_task": self.episodes_per_task,
                "steps": self.num_steps, "mean_return": float(self.returns.mean())}


class LinearPolicy:
    """A fixed rule: push right when ``weights · (obs - offset) > 0``. It has no hidden state.

    ``LinearPolicy([0, 0, 1, 0.5])`` is the rule a = [θ + 0.5 θ̇ > 0]. ``offset`` (4,) or (N, 4)
    shifts the observation, e.g. by a known goal position for an oracle. ``LinearPolicy(None)``
    outputs zero logits: the uniformly random policy (when actions are sampled).
    Defined in chapter 2 (``02_cartpole_tasks``).
    """

    def __init__(self, weights: Sequence[float] | None, offset=None, sharpness: float = 1e3):
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.offset = None if offset is None else torch.as_tensor(offset, dtype=torch.float32)
        self.sharpness = sharpness  # large: sampling agrees with the argmax almost surely

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, 0)

    def __call__(self, obs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weights is None:
            return torch.zeros(obs.shape[0], N_ACTIONS), hidden
        x = obs if self.offset is None else obs - self.offset
        score = self.sharpness * (x @ self.weights)
        return torch.stack([torch.zeros_like(score), score], dim=-1), hidden


def initial_hidden(policy: Callable, batch_size: int, init_hidden=None) -> torch.Tensor:
    """The start state for ``batch_size`` episodes: ``init_hidden`` (tensor or callable) or ``policy.init_hidden``.

    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    if init_hidden is None:
        if not hasattr(policy, "init_hidden"):
            raise ValueError("policy has no init_hidden(batch_size); pass init_hidden= (a tensor or a callable)")
        init_hidden = policy.init_hidden
    hidden = init_hidden(batch_size) if callable(init_hidden) else init_hidden
    if not isinstance(hidden, torch.Tensor) or hidden.shape[0] != batch_size:
        raise ValueError(f"init_hidden must give a tensor with {batch_size} rows, got {getattr(hidden, 'shape', hidden)}")
    return hidden


def select_actions(outputs: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Actions from the logits ``outputs[:, :2]``: argmax when ``greedy``, else a Categorical sample.

    With two actions a Categorical sample is a Bernoulli draw with P(right) = sigmoid(l1 - l0),
    which is cheaper than ``torch.multinomial`` and takes a seeded generator.
    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    if outputs.dim() != 2 or outputs.shape[1] < N_ACTIONS:
        raise ValueError(f"policy outputs must have shape (N, >={N_ACTIONS}), got {tuple(outputs.shape)}")
    logits = outputs[:, :N_ACTIONS]
    if greedy:
        return logits.argmax(dim=1)
    p_right = torch.sigmoid(logits[:, 1] - logits[:, 0])
    return (torch.rand(p_right.shape, generator=generator) < p_right).long()


def _expand(tasks: Sequence[CartPoleTask], episodes_per_task: int) -> list[CartPoleTask]:
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, CartPoleTask) for t in tasks):
        raise ValueError("tasks must be a non-empty sequence of CartPoleTask")
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, int) or episodes_per_task <= 0:
        raise ValueError(f"episodes_per_task must be a positive int, got {episodes_per_task!r}")
    return [t for t in tasks for _ in range(episodes_per_task)]


@torch.no_grad()
def collect(policy: Callable, tasks: Sequence[CartPoleTask], episodes_per_task: int = 1, seed: int = 0,
            max_steps: int | None = None, greedy: bool = False, init_hidden=None) -> Trajectories:
    """Play ``episodes_per_task`` episodes of every task, all at once; return them as :class:`Trajectories`.

    One vectorised Gymnasium environment steps all N = len(tasks) * episodes_per_task episodes,
    and the policy runs once per time step on the whole (N, 4) batch. ``seed`` fixes the start
    states (``reset(seed=seed)``) and the sampled actions (a ``torch.Generator``). ``max_steps``
    caps every episode (default: each task's own ``max_steps``). Runs without gradients; see
    :func:`ssm_metarl.rl.policy_outputs` to recompute differentiable log-probabilities.
    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    episode_tasks = _expand(tasks, episodes_per_task)
    n = len(episode_tasks)
    limits = np.array([t.max_steps if max_steps is None else min(t.max_steps, max_steps) for t in episode_tasks])
    horizon = int(limits.max())
    env = make_vector_env(episode_tasks, max_episode_steps=horizon)
    generator = torch.Generator().manual_seed(seed)
    obs_np, _ = env.reset(seed=seed)
    hidden = initial_hidden(policy, n, init_hidden)

    obs_buf = np.zeros((n, horizon, 4), dtype=np.float32)
    act_buf = np.zeros((n, horizon), dtype=np.int64)
    rew_buf = np.zeros((n, horizon), dtype=np.float32)
    logp_buf = np.zeros((n, horizon), dtype=np.float32)
    mask_buf = np.zeros((n, horizon), dtype=bool)
    terminated_at_end = np.zeros(n, dtype=bool)
    alive = np.ones(n, dtype=bool)
    steps = 0
    for t in range(horizon):
        outputs, hidden = policy(torch.from_numpy(obs_np), hidden)
        actions = select_actions(outputs, greedy, generator)
        log_p = torch.log_softmax(outputs[:, :N_ACTIONS], dim=1).gather(1, actions[:, None]).squeeze(1)
        obs_buf[:, t], act_buf[:, t], logp_buf[:, t], mask_buf[:, t] = obs_np, actions.numpy(), log_p.numpy(), alive
        obs_np, rew_buf[:, t], terminated, truncated, _ = env.step(actions.numpy())
        terminated_at_end |= alive & terminated
        alive = alive & ~terminated & ~truncated & (t + 1 < limits)
        steps = t + 1
        if not alive.any():
            break
    env.close()
    # Steps after an episode ended hold whatever the auto-resetting environment did: zero them.
    mask = mask_buf[:, :steps]
    return Trajectories(
        obs=torch.from_numpy(obs_buf[:, :steps] * mask[..., None]),
        actions=torch.from_numpy(act_buf[:, :steps] * mask), rewards=torch.from_numpy(rew_buf[:, :steps] * mask),
        mask=torch.from_numpy(mask), log_probs=torch.from_numpy(logp_buf[:, :steps] * mask),
        terminated=torch.from_numpy(terminated_at_end),
        task_index=torch.arange(n) // episodes_per_task, tasks=tuple(tasks), episodes_per_task=episodes_per_task,
    )


@dataclass
class EvalResult:
    """Returns of an evaluation: one per episode (task-major), their mean and 95% bootstrap CI.

    Defined in chapter 2 (``02_cartpole_tasks``).
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
        return {"mean": self.mean, "ci": self.ci.to_dict(), "returns": [float(r) for r in self.returns],
                "episodes_per_task": self.episodes_per_task, "backend": self.backend, "greedy": self.greedy}

    def __str__(self) -> str:
        return f"{self.ci} over {self.returns.size} episodes"


@torch.no_grad()
def _gymnasium_returns(policy, episode_tasks, seed, max_steps, greedy, init_hidden) -> np.ndarray:
    """Play each episode in its own real Gymnasium env (``make_env``), batching only the policy."""
    envs = [make_env(t if max_steps is None else CartPoleTask(**{**t.to_dict(), "max_steps": min(t.max_steps, max_steps)}))
            for t in episode_tasks]
    n = len(envs)
    generator = torch.Generator().manual_seed(seed)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    hidden = initial_hidden(policy, n, init_hidden)
    returns, alive = np.zeros(n), np.ones(n, dtype=bool)
    while alive.any():
        outputs, hidden = policy(torch.from_numpy(obs), hidden)
        actions = select_actions(outputs, greedy, generator).numpy()
        for i in np.flatnonzero(alive):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            returns[i] += reward
            alive[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns


def evaluate(policy: Callable, tasks: Sequence[CartPoleTask], episodes: int = 10, seed: int = 0, greedy: bool = True,
             backend: str = "vector", max_steps: int | None = None, init_hidden=None) -> EvalResult:
    """Mean return of ``policy`` over ``episodes`` episodes per task, with a 95% bootstrap CI.

    ``backend="vector"`` uses :func:`collect`; ``backend="gymnasium"`` plays every episode in a
    real ``gym.make`` environment (episode ``i`` resets with ``seed + i``), the check used for
    "solved" claims. ``greedy=True`` takes the argmax action, as the model card does.
    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    if backend == "vector":
        traj = collect(policy, tasks, episodes, seed=seed, max_steps=max_steps, greedy=greedy, init_hidden=init_hidden)
        returns = traj.returns.double().numpy()
    elif backend == "gymnasium":
        returns = _gymnasium_returns(policy, _expand(tasks, episodes), seed, max_steps, greedy, init_hidden)
    else:
        raise ValueError(f"unknown backend {backend!r}; valid choices: 'vector', 'gymnasium'")
    return EvalResult(returns=returns, ci=bootstrap_ci(returns, seed=seed), episodes_per_task=episodes,
                      backend=backend, greedy=greedy)

"""One way to play every agent of chapter 6's peers run: real Gymnasium episodes, the
same initial states for every agent.

An agent here is anything with ``reset(n)`` (start `n` fresh episodes) and
``act(obs, prev_action, prev_reward) -> actions`` on numpy arrays: ``OurAgent`` wraps a
policy of this package (the card's SSM, the in-context policy), ``SB3Agent`` a
Stable-Baselines3 model, recurrent or not, with its observation normaliser if it has
one. ``play`` runs `episodes` rounds on one Gymnasium environment per task, all
environments stepping together, and returns every episode's return. Every agent of the
peers run is scored through it, so a solve test means the same episodes for all.
Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..cartpole.envs import make_env
from ..models.policy import N_ACTIONS, as_policy

__all__ = ["OurAgent", "SB3Agent", "play"]


class OurAgent:
    """A policy of this package (chapter 2's interface) acting on numpy observations;
    greedy takes the larger logit, otherwise it samples. Chapter 6."""

    def __init__(self, policy, greedy: bool = True, seed: int = 0):
        self.policy, self.greedy = as_policy(policy), greedy
        self.generator = torch.Generator().manual_seed(seed)
        self.state = None

    def reset(self, n: int) -> None:
        self.state = self.policy.initial_state(n)

    @torch.no_grad()
    def act(self, obs, prev_action, prev_reward) -> np.ndarray:
        logits, self.state = self.policy.step(
            torch.as_tensor(obs, dtype=torch.float32),
            torch.as_tensor(prev_action, dtype=torch.float32),
            torch.as_tensor(prev_reward, dtype=torch.float32),
            self.state,
        )
        logits = logits[..., :N_ACTIONS]  # the model's other outputs are not actions
        if self.greedy:
            return logits.argmax(-1).numpy()
        probs = torch.softmax(logits, -1)
        return torch.multinomial(probs, 1, generator=self.generator)[:, 0].numpy()


class SB3Agent:
    """A Stable-Baselines3 model acting on numpy observations: `deterministic` as SB3's
    ``predict``; a recurrent model (sb3-contrib's ``RecurrentPPO``) keeps its LSTM
    state across steps; `normalize` (a ``VecNormalize``) scales the observations as in
    training. Chapter 6."""

    def __init__(self, model, deterministic: bool = True, normalize=None):
        self.model, self.deterministic, self.normalize = model, deterministic, normalize
        self.state, self.first = None, None

    def reset(self, n: int) -> None:
        self.state, self.first = None, np.ones(n, dtype=bool)

    def act(self, obs, prev_action, prev_reward) -> np.ndarray:
        if self.normalize is not None:
            obs = self.normalize.normalize_obs(obs)
        actions, self.state = self.model.predict(
            obs,
            state=self.state,
            episode_start=self.first,
            deterministic=self.deterministic,
        )
        self.first = np.zeros_like(self.first)
        return np.asarray(actions)


def play(agent, tasks, episodes: int, seed: int) -> np.ndarray:
    """Returns of `episodes` episodes of `agent` on each task, (len(tasks), episodes).

    Episode `e` of task `i` starts from ``reset(seed=seed + 1000 * e + i)``: the same
    initial state for every agent given the same `seed`. ``None`` in `tasks` is
    Gymnasium's own ``CartPole-v1``. Chapter 6.
    """
    import gymnasium as gym

    envs = [
        gym.make("CartPole-v1") if task is None else make_env(task) for task in tasks
    ]
    n, out = len(envs), np.zeros((len(envs), episodes))
    try:
        for e in range(episodes):
            obs = np.stack(
                [env.reset(seed=seed + 1000 * e + i)[0] for i, env in enumerate(envs)]
            )
            agent.reset(n)
            prev_action, prev_reward = np.full(n, -1.0), np.zeros(n)
            done = np.zeros(n, dtype=bool)
            while not done.all():
                actions = agent.act(obs.astype(np.float32), prev_action, prev_reward)
                for i in np.flatnonzero(~done):
                    obs[i], reward, term, trunc, _ = envs[i].step(int(actions[i]))
                    out[i, e] += reward
                    prev_reward[i] = reward
                    done[i] = term or trunc
                prev_action = actions.astype(np.float64)
        return out
    finally:
        for env in envs:
            env.close()

"""PPO over meta-episodes: chapter 7's trainer for memory policies on meta-CartPole.

A rollout plays `envs` meta-CartPoles side by side for `rollout` steps with a
`MemoryPolicy`, carrying each row's recurrent state across trials and across rollouts;
a meta-episode that ends starts the next at once (its first step resets the state).
Advantages are GAE with the bootstrap cut at every *trial* end (`cut_at_trials`): the
hidden state carries over, but the value of a trial's last step does not reach into the
next trial. A meta-episode-level discount with a constant reward would otherwise teach
early trials less than late ones, and trial 16 could beat trial 1 with no in-context
learning at all. The update replays each row's rollout through `MemoryPolicy.sequence`
from the state it started with (truncated backpropagation through time). Chapter 7.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..cartpole.meta_cartpole import MetaCartPoleBatch, MetaCartPoleConfig
from ..io.validation import check_int, check_positive, check_unit_interval
from ..models.policy import select_actions
from .losses import UpdateGuard

__all__ = ["MetaPPOConfig", "train_meta_ppo", "evaluate_trials", "trial_gae"]


@dataclass
class MetaPPOConfig:
    """Chapter 7's PPO settings for meta-episodes (defaults after CleanRL's recurrent
    PPO, scaled to 2 cores)."""

    envs: int = 64  # meta-episodes played side by side
    rollout: int = 256  # steps per row between updates (the BPTT length)
    lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 4  # passes over a rollout
    minibatches: int = 4  # rows split into this many minibatches per pass
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    cut_at_trials: bool = True  # GAE's bootstrap stops at trial ends
    max_env_steps: int = 2_000_000

    def __post_init__(self):
        for name in ("envs", "rollout", "epochs", "minibatches", "max_env_steps"):
            check_int(name, getattr(self, name))
        if self.envs % self.minibatches:
            raise ValueError(
                f"envs={self.envs} must be a multiple of minibatches={self.minibatches}"
            )
        for name in ("lr", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        for name in ("gamma", "gae_lambda", "clip"):
            check_unit_interval(name, getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)


def trial_gae(rewards, values, last_value, dones, gamma: float, lam: float):
    """GAE over (T, B) arrays; `dones[t]` cuts the bootstrap after step t (a trial or
    a meta-episode ended there). Returns (advantages, value targets). Chapter 7."""
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(steps)):
        following = last_value if t == steps - 1 else values[t + 1]
        carry = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * following * carry - values[t]
        running = delta + gamma * lam * carry * running
        advantages[t] = running
    return advantages, advantages + values


def evaluate_trials(
    policy, config: MetaCartPoleConfig, episodes: int, seed: int, greedy: bool = False
) -> np.ndarray:
    """Return of every trial of `episodes` fresh meta-episodes with 0 gradient steps:
    a (episodes, trials) array (chapter 7)."""
    batch = MetaCartPoleBatch(config, episodes, autoreset=False)
    obs = torch.from_numpy(batch.reset(seed=seed))
    state = policy.initial_state(episodes)
    generator = torch.Generator().manual_seed(seed)
    no_prev = torch.full((episodes,), -1, dtype=torch.long)
    with torch.no_grad():
        while not batch.done.all():
            logits, _, state = policy.step_with_value(
                obs, no_prev, torch.zeros(episodes), state
            )
            actions = select_actions(logits, greedy=greedy, generator=generator)
            obs = torch.from_numpy(batch.step(actions.numpy())[0])
    return batch.last_trial_returns.copy()


def train_meta_ppo(
    policy,
    env: MetaCartPoleConfig,
    config: MetaPPOConfig,
    seed: int = 0,
    log=None,
    observe=None,
    observe_every: int = 0,
) -> list[dict]:
    """Train `policy` (a `MemoryPolicy` reading the 7-dim observation) with PPO on
    meta-CartPole until `max_env_steps`; returns the log rows. `observe(policy,
    env_steps)`, if given, sees the weights each time another `observe_every` steps
    have been played (chapter 7)."""
    cfg = config
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    batch = MetaCartPoleBatch(env, cfg.envs, autoreset=True)
    obs = torch.from_numpy(batch.reset(seed=seed))
    state = policy.initial_state(cfg.envs)
    reset_next = torch.zeros(cfg.envs, dtype=torch.bool)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    guard, rows, env_steps, start = UpdateGuard(cfg.max_grad_norm), [], 0, time.time()
    no_prev, zero = torch.full((cfg.envs,), -1, dtype=torch.long), torch.zeros(cfg.envs)
    shape = (cfg.rollout, cfg.envs)
    next_check = observe_every
    while env_steps < cfg.max_env_steps:
        start_state, start_reset = state.clone(), reset_next.clone()
        store = {k: torch.zeros(shape) for k in ("logp", "value", "reward", "done")}
        store["obs"] = torch.zeros(*shape, obs.shape[-1])
        store["action"] = torch.zeros(shape, dtype=torch.long)
        store["reset"] = torch.zeros(shape, dtype=torch.bool)
        with torch.no_grad():
            for t in range(cfg.rollout):
                logits, value, state = policy.step_with_value(
                    obs, no_prev, zero, state, resets=reset_next
                )
                action = select_actions(logits, greedy=False, generator=generator)
                logp = torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0]
                store["obs"][t], store["reset"][t] = obs, reset_next
                store["action"][t], store["logp"][t], store["value"][t] = (
                    action,
                    logp,
                    value,
                )
                next_obs, reward, trial_done, meta_done = batch.step(action.numpy())
                ended = trial_done if cfg.cut_at_trials else meta_done
                store["reward"][t] = torch.from_numpy(reward)
                store["done"][t] = torch.from_numpy(ended | meta_done)
                obs, reset_next = (
                    torch.from_numpy(next_obs),
                    torch.from_numpy(meta_done),
                )
            _, last_value, _ = policy.step_with_value(
                obs, no_prev, zero, state, resets=reset_next
            )
        env_steps += cfg.rollout * cfg.envs
        advantages, targets = trial_gae(
            store["reward"],
            store["value"],
            last_value,
            store["done"],
            cfg.gamma,
            cfg.gae_lambda,
        )
        seq = {k: v.transpose(0, 1) for k, v in store.items()}  # rows first
        adv, targets = advantages.T, targets.T
        resets = seq["reset"].clone()
        resets[:, 0] |= start_reset  # a row whose first step starts a meta-episode
        for _ in range(cfg.epochs):
            order = torch.randperm(cfg.envs, generator=generator)
            for part in order.chunk(cfg.minibatches):
                logits, values = policy.sequence(
                    seq["obs"][part], resets=resets[part], state=start_state[part]
                )
                logp_all = torch.log_softmax(logits, -1)
                logp = logp_all.gather(-1, seq["action"][part][..., None])[..., 0]
                a = adv[part]
                a = (a - a.mean()) / (a.std() + 1e-8)
                ratio = torch.exp(logp - seq["logp"][part])
                clipped = torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip)
                policy_loss = -torch.min(ratio * a, clipped * a).mean()
                value_loss = 0.5 * ((values - targets[part]) ** 2).mean()
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                loss = (
                    policy_loss
                    + cfg.value_coef * value_loss
                    - cfg.entropy_coef * entropy
                )
                guard.step(optimizer, loss, policy.parameters())
        done_rows = np.flatnonzero(batch.episodes_completed > 0)
        trials = batch.last_trial_returns[done_rows]
        row = {
            "env_steps": env_steps,
            "seconds": time.time() - start,
            "return": float(np.nansum(trials, 1).mean()) if len(done_rows) else None,
            "trial_1": float(trials[:, 0].mean()) if len(done_rows) else None,
            "trial_last": float(trials[:, -1].mean()) if len(done_rows) else None,
            "value_loss": float(value_loss.detach()),
            "entropy": float(entropy.detach()),
        }
        rows.append(row)
        if log is not None:
            log(row)
        if observe is not None and env_steps >= next_check:
            observe(policy, env_steps)
            next_check += observe_every
    return rows

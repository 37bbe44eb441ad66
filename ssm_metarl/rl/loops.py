"""The REINFORCE and PPO training loops (CleanRL style): one readable loop each, every
setting in a config (`ssm_metarl.rl.configs`).

Each iteration plays a batch (`ssm_metarl.rl.batches`), turns it into advantages, takes
guarded policy steps, logs a row, and asks its `StopRule` (`ssm_metarl.rl.stopping`)
whether the run is over. Both loops can weigh every task equally (`balance_tasks=True`).
Unbalanced (the default), advantages are standardised over the whole batch and the loss
is the mean over all played steps, so a task counts as much as the steps it played: on a
mix of tasks, the ones the policy already balances (500-step episodes) drown out the
ones where it falls at once (10-step episodes), and the tasks with the largest returns
set the advantages' scale. Balanced, advantages are standardised within each task's
episodes and the loss is each task's mean over its own steps, averaged over tasks
(`ssm_metarl.rl.losses.masked_mean` with `n_tasks`): every task pulls with the same
weight. With one task, or tasks that played equally many steps with the same advantage
statistics, the two are the same. Taught in chapter 2 (`book/02_cartpole_tasks.md`);
balancing, sampling by world and selection on validation in chapter 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..cartpole.tasks import CartPoleTask
from ..models.policy import policy_log_probs
from ..report.progress import log_row, progress_bar
from .batches import play_batch, world_returns
from .configs import PPOConfig, ReinforceConfig
from .losses import (
    UpdateGuard,
    batch_baseline,
    discounted_returns,
    gae,
    masked_mean,
    normalize_advantages,
    ppo_clip_loss,
    reinforce_loss,
    value_loss,
)
from .stopping import StopRule, Validate

__all__ = ["ValueNet", "TrainResult", "train_reinforce", "train_ppo"]


class ValueNet(nn.Module):
    """A small critic V(obs): 4 → 64 → 64 → 1 with tanh. CartPole's observation is
    Markov for the physics.

    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(self, obs_dim: int = 4, hidden: int = 64, scale: float = 50.0):
        super().__init__()
        self.scale = scale  # returns reach ~100 with gamma=0.99: predict value / scale
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 1),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1) * self.scale


@dataclass
class TrainResult:
    """What a training run did: per-iteration history, the update guard's counts, the
    solve check and, with a validation callback, the validation log (chapters 2, 4)."""

    algorithm: str
    config: dict
    seed: int
    # iteration, env_steps, seconds, mean_return, loss, ...
    history: dict[str, list] = field(default_factory=dict)
    skipped_updates: int = 0
    applied_updates: int = 0
    # greedy mean >= target over eval_episodes real-Gymnasium episodes (or, with a
    # validation callback, validation score >= target)
    solved: bool = False
    solved_at_seconds: float | None = None
    solved_at_steps: int | None = None
    # the last real-Gymnasium check, if any (with validation: the best-scoring row)
    final_eval: dict | None = None
    # with a validation callback: iteration, env_steps and the callback's row
    validation: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _seeded_critic(seed: int) -> ValueNet:
    """A critic initialised from `seed` without touching the caller's global torch
    RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ValueNet()


def train_reinforce(
    policy: nn.Module,
    tasks: Sequence[CartPoleTask],
    config: ReinforceConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TrainResult:
    """Train `policy` on `tasks` with REINFORCE and a baseline; stops at the target or
    at a budget (iterations, steps, seconds).

    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    cfg = config or ReinforceConfig()
    critic = _seeded_critic(seed) if cfg.baseline == "learned" else None
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    critic_opt = (
        torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr) if critic else None
    )
    guard, critic_guard = UpdateGuard(cfg.max_grad_norm), UpdateGuard(cfg.max_grad_norm)
    result = TrainResult("reinforce", asdict(cfg), seed)
    stop = StopRule(tasks, cfg, seed, result)  # solved, or out of budget?
    rng, env_steps = np.random.default_rng(seed), 0  # rng: task_sampling="by_world"

    for it in progress_bar(range(cfg.max_iters), enabled=progress, desc="REINFORCE"):
        # 1. Play a batch of episodes with the current policy (no gradients).
        traj, n_tasks = play_batch(policy, tasks, cfg, seed, it, rng)
        env_steps += traj.num_steps
        # 2. Returns-to-go, minus a baseline, give the advantages.
        returns = discounted_returns(traj.rewards, traj.mask, cfg.gamma)
        if cfg.baseline == "batch":
            advantages = returns - batch_baseline(returns, traj.mask)
        elif cfg.baseline == "learned":
            values = critic(traj.obs)
            critic_guard.step(
                critic_opt, value_loss(values, returns, traj.mask), critic.parameters()
            )
            advantages = returns - values.detach()
        else:
            advantages = returns
        if cfg.normalize:
            advantages = normalize_advantages(advantages, traj.mask, n_tasks=n_tasks)
        # 3. Recompute log-probabilities with gradients and take one guarded step.
        log_probs, entropy = policy_log_probs(policy, traj)
        loss = reinforce_loss(
            log_probs, advantages, traj.mask, n_tasks
        ) - cfg.entropy_coef * masked_mean(entropy, traj.mask, n_tasks)
        guard.step(optimizer, loss, policy.parameters())

        seconds, mean_return = stop.seconds(), float(traj.returns.mean())
        log_row(
            result.history,
            iteration=it,
            env_steps=env_steps,
            seconds=seconds,
            mean_return=mean_return,
            **world_returns(traj, cfg),
            loss=float(loss.detach()),
            entropy=float(masked_mean(entropy.detach(), traj.mask)),
            grad_norm=guard.last_grad_norm,
        )
        # 4. Stop when solved (greedy, checked in real Gymnasium) or out of budget.
        if stop.done(policy, it, env_steps, seconds, mean_return):
            break
    result.skipped_updates, result.applied_updates = (
        guard.skipped + critic_guard.skipped,
        guard.applied,
    )
    return result


def train_ppo(
    policy: nn.Module,
    tasks: Sequence[CartPoleTask],
    config: PPOConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    validate: Validate | None = None,
    observe: Callable[[nn.Module, int], None] | None = None,
) -> TrainResult:
    """Train `policy` on `tasks` with PPO-clip, GAE and a `ValueNet` critic.

    The critic is separate from the SSM (its output 2 is left unused) so that the policy
    keeps exactly the model card's parameters. `validate(policy) -> (score, row)`, if
    given, runs every `validate_every` iterations in place of the greedy solve check
    (`ssm_metarl.rl.stopping.StopRule`); with `keep="best"` the run ends with the
    best-scoring weights. `observe(policy, env_steps)`, if given, sees the weights
    after every update (chapter 6's evaluation grid). Defined in chapter 2
    (`02_cartpole_tasks`); the validation and the options for in-context training in
    chapter 4.
    """
    cfg = config or PPOConfig()
    critic = _seeded_critic(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    guard, critic_guard = UpdateGuard(cfg.max_grad_norm), UpdateGuard(cfg.max_grad_norm)
    result = TrainResult("ppo", asdict(cfg), seed)
    stop = StopRule(tasks, cfg, seed, result, validate)  # solved, or out of budget?
    rng, env_steps = np.random.default_rng(seed), 0  # rng: task_sampling="by_world"

    for it in progress_bar(range(cfg.max_iters), enabled=progress, desc="PPO"):
        # 1. Play a batch of episodes; collect() keeps the acting policy's
        # log-probabilities.
        traj, n_tasks = play_batch(policy, tasks, cfg, seed, it, rng)
        env_steps += traj.num_steps
        old_log_probs = traj.log_probs
        with torch.no_grad():
            advantages = gae(
                traj.rewards, critic(traj.obs), traj.mask, cfg.gamma, cfg.gae_lambda
            )
            targets = advantages + critic(traj.obs)
            advantages = normalize_advantages(advantages, traj.mask, n_tasks=n_tasks)
        # 2. Several clipped policy steps on the same batch.
        for _ in range(cfg.epochs):
            log_probs, entropy = policy_log_probs(policy, traj)
            policy_loss = ppo_clip_loss(
                log_probs, old_log_probs, advantages, traj.mask, cfg.clip, n_tasks
            )
            guard.step(
                optimizer,
                policy_loss
                - cfg.entropy_coef * masked_mean(entropy, traj.mask, n_tasks),
                policy.parameters(),
            )
        # 3. Fit the critic to the GAE targets (in units of its output scale, so the
        # loss is O(1)).
        for _ in range(cfg.critic_steps):
            critic_loss = value_loss(
                critic(traj.obs) / critic.scale, targets / critic.scale, traj.mask
            )
            critic_guard.step(critic_opt, critic_loss, critic.parameters())

        seconds, mean_return = stop.seconds(), float(traj.returns.mean())
        log_row(
            result.history,
            iteration=it,
            env_steps=env_steps,
            seconds=seconds,
            mean_return=mean_return,
            **world_returns(traj, cfg),
            loss=float(policy_loss.detach()),
            entropy=float(masked_mean(entropy.detach(), traj.mask)),
            value_loss=float(critic_loss.detach()),
            grad_norm=guard.last_grad_norm,
        )
        if observe is not None:
            observe(policy, env_steps)
        # 4. Stop when solved (greedy, or the validation score) or out of budget.
        if stop.done(policy, it, env_steps, seconds, mean_return):
            break
    stop.finish(policy)  # the last weights, or the best-validated ones (keep="best")
    result.skipped_updates, result.applied_updates = (
        guard.skipped + critic_guard.skipped,
        guard.applied,
    )
    return result

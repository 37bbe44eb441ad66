"""The REINFORCE and PPO training loops (CleanRL style): one readable loop each, every
setting in a config.

Both loops can weigh every task equally (`balance_tasks=True`). Unbalanced (the
default), advantages are standardised over the whole batch and the loss is the mean over
all played steps, so a task counts as much as the steps it played: on a mix of tasks,
the ones the policy already balances (500-step episodes) drown out the ones where it
falls at once (10-step episodes), and the tasks with the largest returns set the
advantages' scale. Balanced, advantages are standardised within each task's episodes and
the loss is each task's mean over its own steps, averaged over tasks
(`ssm_metarl.rl.losses.masked_mean` with `n_tasks`): every task pulls with the same
weight. With one task, or tasks that played equally many steps with the same advantage
statistics, the two are the same. Taught in chapter 2 (`book/02_cartpole_tasks.md`);
balancing in chapter 4.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..cartpole.rollout import collect, evaluate
from ..cartpole.tasks import CartPoleTask
from ..io.validation import check_choice, check_int, check_positive, check_unit_interval
from ..models.policy import policy_log_probs
from ..report.progress import log_row, progress_bar
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

__all__ = [
    "ValueNet",
    "ReinforceConfig",
    "PPOConfig",
    "TrainResult",
    "train_reinforce",
    "train_ppo",
    "BASELINES",
]

#: What `ReinforceConfig` may subtract from the returns-to-go.
BASELINES = ("batch", "learned", "none")


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


#
#
#
# --------------------------------------------------------------------------------------
# Training loops
# --------------------------------------------------------------------------------------


def _validate_config(cfg) -> None:
    """Reject settings that would silently train nothing or diverge, naming the
    field."""
    owner = type(cfg).__name__
    for name in (
        "episodes_per_iter",
        "max_iters",
        "eval_episodes",
        "epochs",
        "critic_steps",
        "episodes_per_task",
    ):
        if hasattr(cfg, name):
            check_int(f"{owner}.{name}", getattr(cfg, name))
    for name in ("lr", "critic_lr", "max_seconds", "clip"):
        if hasattr(cfg, name):
            # inf: no time limit
            check_positive(
                f"{owner}.{name}", getattr(cfg, name), finite=(name != "max_seconds")
            )
    for name in ("gamma", "gae_lambda"):
        if hasattr(cfg, name):
            check_unit_interval(f"{owner}.{name}", getattr(cfg, name))
    if cfg.episodes_per_iter % cfg.episodes_per_task:
        raise ValueError(
            f"{owner}.episodes_per_iter={cfg.episodes_per_iter} must be a multiple of "
            f"episodes_per_task={cfg.episodes_per_task}"
        )
    if hasattr(cfg, "baseline"):
        check_choice("baseline", cfg.baseline, BASELINES)


@dataclass
class ReinforceConfig:
    """REINFORCE with a baseline. Defaults solve CartPole-v1 with the card's SSM in
    seconds (chapter 2)."""

    # episodes collected per update (spread over the training tasks)
    episodes_per_iter: int = 16
    gamma: float = 0.99  # discount of the return-to-go
    lr: float = 5e-3  # Adam step size for the policy
    # "batch" (mean return-to-go per time step), "learned" (ValueNet) or "none"
    baseline: str = "batch"
    critic_lr: float = 3e-3  # Adam step size for the learned baseline
    normalize: bool = True  # standardise advantages over the batch
    entropy_coef: float = 0.0  # bonus on the policy's entropy
    max_grad_norm: float = 1.0  # gradient clipping (L2 norm over all parameters)
    max_iters: int = 200  # stop after this many updates ...
    # ... or once this many environment steps were played ...
    max_env_steps: int | None = None
    # ... or after this much wall time (not reproducible: depends on the machine) ...
    max_seconds: float = 60.0
    # ... or once greedy returns reach this (checked as below)
    target_return: float | None = 475.0
    # episodes of the greedy check (vector sim first, then real Gymnasium)
    eval_episodes: int = 100
    # run the check only when the batch's sampled mean return reaches this
    eval_trigger: float = 450.0
    # weigh every task equally: advantages and loss per task (module docstring)
    balance_tasks: bool = False
    # a batch plays episodes_per_iter / episodes_per_task tasks, this many episodes each
    episodes_per_task: int = 1

    def __post_init__(self):
        _validate_config(self)


@dataclass
class PPOConfig:
    """PPO-clip with GAE and a separate critic (`ValueNet`). Defined in chapter 2."""

    # episodes collected per iteration (small batches: more updates per step)
    episodes_per_iter: int = 8
    # clipped policy steps on each batch (each one re-runs the SSM over the batch)
    epochs: int = 2
    gamma: float = 0.99
    # GAE's lambda: 1 = Monte Carlo returns minus V, 0 = one-step TD errors
    gae_lambda: float = 0.95
    clip: float = 0.2  # PPO's epsilon
    lr: float = 3e-3  # Adam step size for the policy
    critic_lr: float = 3e-3  # Adam step size for the critic
    # critic steps per batch (the critic is a cheap MLP on observations)
    critic_steps: int = 10
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    max_iters: int = 200
    max_env_steps: int | None = None
    max_seconds: float = 60.0
    target_return: float | None = 475.0
    eval_episodes: int = 100
    eval_trigger: float = 450.0
    # weigh every task equally: advantages and loss per task (module docstring)
    balance_tasks: bool = False
    # a batch plays episodes_per_iter / episodes_per_task tasks, this many episodes each
    episodes_per_task: int = 1

    def __post_init__(self):
        _validate_config(self)


@dataclass
class TrainResult:
    """What a training run did: per-iteration history, the update guard's counts and the
    solve check (chapter 2)."""

    algorithm: str
    config: dict
    seed: int
    # iteration, env_steps, seconds, mean_return, loss, ...
    history: dict[str, list] = field(default_factory=dict)
    skipped_updates: int = 0
    applied_updates: int = 0
    # greedy mean >= target over eval_episodes real-Gymnasium episodes
    solved: bool = False
    solved_at_seconds: float | None = None
    solved_at_steps: int | None = None
    final_eval: dict | None = None  # the last real-Gymnasium check, if any

    def to_dict(self) -> dict:
        return asdict(self)


def _seeded_critic(seed: int) -> ValueNet:
    """A critic initialised from `seed` without touching the caller's global torch
    RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ValueNet()


def _episode_tasks(
    tasks: Sequence[CartPoleTask], n: int, iteration: int, per_task: int = 1
) -> tuple[list[CartPoleTask], int]:
    """Spread `n` episodes over the tasks, `per_task` episodes each, rotating through
    the tasks in their order when there are more tasks than the batch holds."""
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


def _solve_check(policy, tasks, cfg, seed: int, result: TrainResult) -> bool:
    """Greedy check: the vectorised simulator first (cheap), then real Gymnasium
    episodes to confirm."""
    tasks = list(tasks)
    per_task = max(1, cfg.eval_episodes // len(tasks))
    quick = evaluate(policy, tasks, per_task, seed=10_000 + seed)
    if quick.mean < cfg.target_return:
        return False
    real = evaluate(policy, tasks, per_task, seed=20_000 + seed, backend="gymnasium")
    result.final_eval = real.to_dict()
    return real.mean >= cfg.target_return


def _play(policy, tasks, cfg, seed: int, iteration: int):
    """The iteration's batch of episodes, and `n_tasks` for balancing (None: every step
    weighs the same)."""
    ep_tasks, per_task = _episode_tasks(
        tasks, cfg.episodes_per_iter, iteration, cfg.episodes_per_task
    )
    traj = collect(policy, ep_tasks, per_task, seed=seed * 100_003 + iteration)
    return traj, (len(traj.tasks) if cfg.balance_tasks else None)


def _done(
    policy,
    tasks,
    cfg,
    seed: int,
    result: TrainResult,
    start: float,
    seconds: float,
    env_steps: int,
    mean_return: float,
) -> bool:
    """Solved (greedy, checked in real Gymnasium; recorded in `result`) or out of
    budget."""
    if (
        cfg.target_return is not None
        and mean_return >= cfg.eval_trigger
        and _solve_check(policy, tasks, cfg, seed, result)
    ):
        result.solved, result.solved_at_seconds, result.solved_at_steps = (
            True,
            time.perf_counter() - start,
            env_steps,
        )
        return True
    return seconds >= cfg.max_seconds or (
        cfg.max_env_steps is not None and env_steps >= cfg.max_env_steps
    )


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
    result, start, env_steps = (
        TrainResult("reinforce", asdict(cfg), seed),
        time.perf_counter(),
        0,
    )

    for it in progress_bar(range(cfg.max_iters), enabled=progress, desc="REINFORCE"):
        # 1. Play a batch of episodes with the current policy (no gradients).
        traj, n_tasks = _play(policy, tasks, cfg, seed, it)
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

        seconds = time.perf_counter() - start
        mean_return = float(traj.returns.mean())
        log_row(
            result.history,
            iteration=it,
            env_steps=env_steps,
            seconds=seconds,
            mean_return=mean_return,
            loss=float(loss.detach()),
            entropy=float(masked_mean(entropy.detach(), traj.mask)),
            grad_norm=guard.last_grad_norm,
        )
        # 4. Stop when solved (greedy, checked in real Gymnasium) or out of budget.
        if _done(
            policy, tasks, cfg, seed, result, start, seconds, env_steps, mean_return
        ):
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
) -> TrainResult:
    """Train `policy` on `tasks` with PPO-clip, GAE and a `ValueNet` critic.

    The critic is separate from the SSM (its output 2 is left unused) so that the policy
    keeps exactly the model card's parameters. Defined in chapter 2
    (`02_cartpole_tasks`).
    """
    cfg = config or PPOConfig()
    critic = _seeded_critic(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    guard, critic_guard = UpdateGuard(cfg.max_grad_norm), UpdateGuard(cfg.max_grad_norm)
    result, start, env_steps = (
        TrainResult("ppo", asdict(cfg), seed),
        time.perf_counter(),
        0,
    )

    for it in progress_bar(range(cfg.max_iters), enabled=progress, desc="PPO"):
        # 1. Play a batch of episodes; collect() keeps the acting policy's
        # log-probabilities.
        traj, n_tasks = _play(policy, tasks, cfg, seed, it)
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

        seconds = time.perf_counter() - start
        mean_return = float(traj.returns.mean())
        log_row(
            result.history,
            iteration=it,
            env_steps=env_steps,
            seconds=seconds,
            mean_return=mean_return,
            loss=float(policy_loss.detach()),
            entropy=float(masked_mean(entropy.detach(), traj.mask)),
            value_loss=float(critic_loss.detach()),
            grad_norm=guard.last_grad_norm,
        )
        if _done(
            policy, tasks, cfg, seed, result, start, seconds, env_steps, mean_return
        ):
            break
    result.skipped_updates, result.applied_updates = (
        guard.skipped + critic_guard.skipped,
        guard.applied,
    )
    return result

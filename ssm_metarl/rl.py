"""Policy gradients for recurrent policies: returns, GAE, REINFORCE and PPO-clip.

The building blocks are plain functions of tensors (log-probabilities, advantages and a
mask of played steps), so the same code serves a normal ``nn.Module`` and MAML's inner
loop with ``torch.func.functional_call`` weights. Because the SSM policy sees only
observations, log-probabilities are recomputed after collection by running the policy
over the stored observations (:func:`policy_outputs`, "teacher forcing"); no graph is kept
during rollouts.

:func:`train_reinforce` and :func:`train_ppo` are readable, top-to-bottom training loops
(CleanRL style) with every hyperparameter in a config dataclass.

Taught in chapter 2 (``book/02_cartpole_tasks.md``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .progress import progress_bar
from .rollout import N_ACTIONS, Trajectories, collect, evaluate, initial_hidden
from .ssm import StateSpaceModel
from .tasks import CartPoleTask

__all__ = [
    "masked_mean", "discounted_returns", "gae", "batch_baseline", "normalize_advantages",
    "policy_outputs", "action_log_probs", "policy_log_probs",
    "reinforce_loss", "ppo_clip_loss", "value_loss", "UpdateGuard", "ValueNet",
    "ReinforceConfig", "PPOConfig", "TrainResult", "train_reinforce", "train_ppo",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Returns and advantages
# ----------------------------------------------------------------------------------------------

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the played steps (``mask`` True). Defined in chapter 2."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 0.99) -> torch.Tensor:
    r"""Reward-to-go :math:`G_t = \sum_{k \ge t} \gamma^{k-t} r_k` of each episode, (N, T); 0 on padding.

    The end of a collected episode is treated as terminal (also at the time limit).
    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 0.99,
        lam: float = 0.95) -> torch.Tensor:
    r"""Generalised advantage estimates (Schulman et al. 2016), (N, T); 0 on padding.

    :math:`\delta_t = r_t + \gamma V_{t+1} - V_t`, :math:`A_t = \delta_t + \gamma\lambda A_{t+1}`,
    with :math:`V = 0` after the last played step. ``lam=1`` gives :math:`G_t - V_t`,
    ``lam=0`` the one-step TD error. Defined in chapter 2 (``02_cartpole_tasks``).
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    m = mask.to(values.dtype)
    values = values * m
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in range(values.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages


def batch_baseline(returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The batch baseline: at each time step, the mean return-to-go of the episodes still playing. (N, T).

    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    m = mask.to(returns.dtype)
    per_step = (returns * m).sum(dim=0) / m.sum(dim=0).clamp_min(1.0)
    return per_step.expand_as(returns) * m


def normalize_advantages(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit standard deviation over the played steps. Defined in chapter 2."""
    mean = masked_mean(advantages, mask)
    std = masked_mean((advantages - mean) ** 2, mask).sqrt()
    return (advantages - mean) / (std + eps) * mask


# ----------------------------------------------------------------------------------------------
# Log-probabilities by teacher forcing
# ----------------------------------------------------------------------------------------------

def policy_outputs(policy: Callable, obs: torch.Tensor, init_hidden=None) -> torch.Tensor:
    """Run ``policy(obs_t, hidden)`` over the stored observations (N, T, 4) → outputs (N, T, O).

    Differentiable (with respect to a module's parameters or to functional weights).
    ``init_hidden`` as in :func:`ssm_metarl.rollout.collect`. Defined in chapter 2.
    """
    if obs.dim() != 3:
        raise ValueError(f"obs must have shape (N, T, obs_dim), got {tuple(obs.shape)}")
    hidden = initial_hidden(policy, obs.shape[0], init_hidden)
    if isinstance(policy, StateSpaceModel):
        return _ssm_outputs(policy, obs, hidden)
    outputs = []
    for t in range(obs.shape[1]):
        y, hidden = policy(obs[:, t], hidden)
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def _ssm_outputs(model: StateSpaceModel, obs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``StateSpaceModel`` over a whole sequence, with the input terms batched over time.

    Only the transition ``h_t = tanh(f(h_{t-1}) + B x_t)`` is sequential; ``B x_t``, ``D x_t``
    and the readout ``C(h_t)`` run once on all T steps, which halves the time of a
    forward-backward pass. Tests check it equals step-by-step ``model(x_t, h)``.
    """
    drive = model.input_map(obs)
    states = []
    for t in range(obs.shape[1]):
        pre = model.transition(hidden) + drive[:, t]
        hidden = torch.tanh(pre) if model.config.bounded else pre
        states.append(hidden)
    return model.readout(torch.stack(states, dim=1)) + model.feedthrough(obs)


def action_log_probs(outputs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``actions`` (N, T) and entropies under Categorical(logits=outputs[..., :2]).

    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    log_p = torch.log_softmax(outputs[..., :N_ACTIONS], dim=-1)
    chosen = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return chosen, entropy


def policy_log_probs(policy: Callable, traj: Trajectories, init_hidden=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable (log_probs, entropy), each (N, T), of the actions stored in ``traj``.

    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    return action_log_probs(policy_outputs(policy, traj.obs, init_hidden), traj.actions)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def reinforce_loss(log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""REINFORCE (Williams 1992): :math:`-\frac{1}{|M|}\sum_{(i,t)\in M} \log\pi(a_t|h_t)\,A_t`.

    ``advantages`` are treated as constants. Defined in chapter 2 (``02_cartpole_tasks``).
    """
    return -masked_mean(log_probs * advantages.detach(), mask)


def ppo_clip_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    r"""PPO's clipped surrogate (Schulman et al. 2017), negated to be minimised.

    :math:`-\mathbb{E}[\min(\rho_t A_t, \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t)]`,
    :math:`\rho_t = \pi(a_t)/\pi_{old}(a_t)`. Defined in chapter 2 (``02_cartpole_tasks``).
    """
    if clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    ratio = torch.exp(log_probs - old_log_probs.detach())
    advantages = advantages.detach()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    return -masked_mean(surrogate, mask)


def value_loss(values: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of a value estimate over the played steps. Defined in chapter 2."""
    return masked_mean((values - targets.detach()) ** 2, mask)


@dataclass
class UpdateGuard:
    """Clip gradients and refuse updates with a non-finite loss or gradient, counting each refusal.

    ``guard.step(optimizer, loss, params)`` returns True when it updated the weights.
    Broken RL code fails silently; a skipped update here is never silent: see ``skipped``.
    Defined in chapter 2 (``02_cartpole_tasks``).
    """

    max_grad_norm: float | None = 0.5
    skipped: int = 0
    applied: int = 0
    last_grad_norm: float = float("nan")

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: Iterable[torch.Tensor]) -> bool:
        parameters = [p for p in parameters if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.skipped += 1
            log.warning("non-finite loss %s: update skipped (%d so far)", float(loss.detach()), self.skipped)
            return False
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm if self.max_grad_norm else math.inf)
        self.last_grad_norm = float(norm)
        if not math.isfinite(self.last_grad_norm):
            optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            log.warning("non-finite gradient norm: update skipped (%d so far)", self.skipped)
            return False
        optimizer.step()
        self.applied += 1
        return True


class ValueNet(nn.Module):
    """A small critic V(obs): 4 → 64 → 64 → 1 with tanh. CartPole's observation is Markov for the physics.

    Defined in chapter 2 (``02_cartpole_tasks``).
    """

    def __init__(self, obs_dim: int = 4, hidden: int = 64, scale: float = 50.0):
        super().__init__()
        self.scale = scale  # returns reach ~100 with gamma=0.99: predict value / scale
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1) * self.scale


# ----------------------------------------------------------------------------------------------
# Training loops
# ----------------------------------------------------------------------------------------------

def _validate_config(cfg) -> None:
    """Reject settings that would silently train nothing or diverge, naming the field."""
    for name in ("episodes_per_iter", "max_iters", "eval_episodes", "epochs", "critic_steps"):
        value = getattr(cfg, name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")
    for name in ("lr", "critic_lr", "max_seconds", "clip"):
        value = getattr(cfg, name, 1.0)
        if not value > 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be positive, got {value!r}")
    for name in ("gamma", "gae_lambda"):
        value = getattr(cfg, name, 0.5)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be in [0, 1], got {value!r}")
    if getattr(cfg, "baseline", "batch") not in ("batch", "learned", "none"):
        raise ValueError(f"unknown baseline {cfg.baseline!r}; valid choices: 'batch', 'learned', 'none'")


@dataclass
class ReinforceConfig:
    """REINFORCE with a baseline. Defaults solve CartPole-v1 with the card's SSM in seconds (chapter 2)."""

    episodes_per_iter: int = 16  # episodes collected per update (spread over the training tasks)
    gamma: float = 0.99  # discount of the return-to-go
    lr: float = 5e-3  # Adam step size for the policy
    baseline: str = "batch"  # "batch" (mean return-to-go per time step), "learned" (ValueNet) or "none"
    critic_lr: float = 3e-3  # Adam step size for the learned baseline
    normalize: bool = True  # standardise advantages over the batch
    entropy_coef: float = 0.0  # bonus on the policy's entropy
    max_grad_norm: float = 1.0  # gradient clipping (L2 norm over all parameters)
    max_iters: int = 200  # stop after this many updates ...
    max_env_steps: int | None = None  # ... or once this many environment steps were played ...
    max_seconds: float = 60.0  # ... or after this much wall time (not reproducible: depends on the machine) ...
    target_return: float | None = 475.0  # ... or once greedy returns reach this (checked as below)
    eval_episodes: int = 100  # episodes of the greedy check (vector sim first, then real Gymnasium)
    eval_trigger: float = 450.0  # run the check only when the batch's sampled mean return reaches this

    def __post_init__(self):
        _validate_config(self)


@dataclass
class PPOConfig:
    """PPO-clip with GAE and a separate critic (:class:`ValueNet`). Defined in chapter 2."""

    episodes_per_iter: int = 8  # episodes collected per iteration (small batches: more updates per step)
    epochs: int = 2  # clipped policy steps on each batch (each one re-runs the SSM over the batch)
    gamma: float = 0.99
    gae_lambda: float = 0.95  # GAE's lambda: 1 = Monte Carlo returns minus V, 0 = one-step TD errors
    clip: float = 0.2  # PPO's epsilon
    lr: float = 3e-3  # Adam step size for the policy
    critic_lr: float = 3e-3  # Adam step size for the critic
    critic_steps: int = 10  # critic steps per batch (the critic is a cheap MLP on observations)
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    max_iters: int = 200
    max_env_steps: int | None = None
    max_seconds: float = 60.0
    target_return: float | None = 475.0
    eval_episodes: int = 100
    eval_trigger: float = 450.0

    def __post_init__(self):
        _validate_config(self)


@dataclass
class TrainResult:
    """What a training run did: per-iteration history, the update guard's counts and the solve check (chapter 2)."""

    algorithm: str
    config: dict
    seed: int
    history: dict[str, list] = field(default_factory=dict)  # iteration, env_steps, seconds, mean_return, loss, ...
    skipped_updates: int = 0
    applied_updates: int = 0
    solved: bool = False  # greedy mean >= target over eval_episodes real-Gymnasium episodes
    solved_at_seconds: float | None = None
    solved_at_steps: int | None = None
    final_eval: dict | None = None  # the last real-Gymnasium check, if any

    def to_dict(self) -> dict:
        return asdict(self)


def _seeded_critic(seed: int) -> ValueNet:
    """A critic initialised from ``seed`` without touching the caller's global torch RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ValueNet()


def _log_row(history: dict, **row) -> None:
    for key, value in row.items():
        history.setdefault(key, []).append(value)


def _episode_tasks(tasks: Sequence[CartPoleTask], n: int, iteration: int) -> tuple[list[CartPoleTask], int]:
    """Spread ``n`` episodes over the tasks, rotating through them when there are more tasks than episodes."""
    tasks = list(tasks)
    if len(tasks) >= n:
        start = (iteration * n) % len(tasks)
        return [tasks[(start + i) % len(tasks)] for i in range(n)], 1
    if n % len(tasks):
        raise ValueError(f"episodes_per_iter={n} must be a multiple of the number of tasks ({len(tasks)})")
    return tasks, n // len(tasks)


def _solve_check(policy, tasks, cfg, seed: int, result: TrainResult) -> bool:
    """Greedy check: the vectorised simulator first (cheap), then real Gymnasium episodes to confirm."""
    tasks = list(tasks)
    per_task = max(1, cfg.eval_episodes // len(tasks))
    quick = evaluate(policy, tasks, per_task, seed=10_000 + seed)
    if quick.mean < cfg.target_return:
        return False
    real = evaluate(policy, tasks, per_task, seed=20_000 + seed, backend="gymnasium")
    result.final_eval = real.to_dict()
    return real.mean >= cfg.target_return


def train_reinforce(policy: nn.Module, tasks: Sequence[CartPoleTask], config: ReinforceConfig | None = None,
                    seed: int = 0, progress: bool = False) -> TrainResult:
    """Train ``policy`` on ``tasks`` with REINFORCE and a baseline; stops at the target or at a budget (iterations, steps, seconds).

    Defined in chapter 2 (``02_cartpole_tasks``).
    """
    cfg = config or ReinforceConfig()
    if cfg.baseline not in ("batch", "learned", "none"):
        raise ValueError(f"unknown baseline {cfg.baseline!r}; valid choices: 'batch', 'learned', 'none'")
    critic = _seeded_critic(seed) if cfg.baseline == "learned" else None
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr) if critic else None
    guard, critic_guard = UpdateGuard(cfg.max_grad_norm), UpdateGuard(cfg.max_grad_norm)
    result = TrainResult("reinforce", asdict(cfg), seed)
    start, env_steps = time.perf_counter(), 0

    for it in progress_bar(range(cfg.max_iters), enabled=progress, desc="REINFORCE"):
        # 1. Play a batch of episodes with the current policy (no gradients).
        ep_tasks, per_task = _episode_tasks(tasks, cfg.episodes_per_iter, it)
        traj = collect(policy, ep_tasks, per_task, seed=seed * 100_003 + it)
        env_steps += traj.num_steps
        # 2. Returns-to-go, minus a baseline, give the advantages.
        returns = discounted_returns(traj.rewards, traj.mask, cfg.gamma)
        if cfg.baseline == "batch":
            advantages = returns - batch_baseline(returns, traj.mask)
        elif cfg.baseline == "learned":
            values = critic(traj.obs)
            critic_guard.step(critic_opt, value_loss(values, returns, traj.mask), critic.parameters())
            advantages = returns - values.detach()
        else:
            advantages = returns
        if cfg.normalize:
            advantages = normalize_advantages(advantages, traj.mask)
        # 3. Recompute log-probabilities with gradients and take one guarded step.
        log_probs, entropy = policy_log_probs(policy, traj)
        loss = reinforce_loss(log_probs, advantages, traj.mask) - cfg.entropy_coef * masked_mean(entropy, traj.mask)
        guard.step(optimizer, loss, policy.parameters())

        seconds = time.perf_counter() - start
        mean_return = float(traj.returns.mean())
        _log_row(result.history, iteration=it, env_steps=env_steps, seconds=seconds, mean_return=mean_return,
                 loss=float(loss.detach()), entropy=float(masked_mean(entropy.detach(), traj.mask)), grad_norm=guard.last_grad_norm)
        # 4. Stop when solved (greedy, checked in real Gymnasium) or out of budget.
        if cfg.target_return is not None and mean_return >= cfg.eval_trigger and _solve_check(policy, tasks, cfg, seed, result):
            result.solved, result.solved_at_seconds, result.solved_at_steps = True, time.perf_counter() - start, env_steps
            break
        if seconds >= cfg.max_seconds or (cfg.max_env_steps is not None and env_steps >= cfg.max_env_steps):
            break
    result.skipped_updates, result.applied_updates = guard.skipped + critic_guard.skipped, guard.applied
    return result


def train_ppo(policy: nn.Module, tasks: Sequence[CartPoleTask], config: PPOConfig | None = None,
              seed: int = 0, progress: bool = False) -> TrainResult:
    """Train ``policy`` on ``tasks`` with PPO-clip, GAE and a :class:`ValueNet` critic.

    The critic is separate from the SSM (its output 2 is left unused) so that the policy
    keeps exactly the model card's parameters. Defined in chapter 2 (``02_cartpole_tasks``).
    """
    cfg = config or PPOConfig()
    critic = _seeded_critic(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    guard, critic_guard = UpdateGuard(cfg.max_grad_norm), UpdateGuard(cfg.max_grad_norm)
    result = TrainResult("ppo", asdict(cfg), seed)
    start, env_steps = time.perf_counter(), 0

    for it in progress_bar(range(cfg.max_iters), enabled=progress, desc="PPO"):
        # 1. Play a batch of episodes; collect() keeps the acting policy's log-probabilities.
        ep_tasks, per_task = _episode_tasks(tasks, cfg.episodes_per_iter, it)
        traj = collect(policy, ep_tasks, per_task, seed=seed * 100_003 + it)
        env_steps += traj.num_steps
        old_log_probs = traj.log_probs
        with torch.no_grad():
            advantages = gae(traj.rewards, critic(traj.obs), traj.mask, cfg.gamma, cfg.gae_lambda)
            targets = advantages + critic(traj.obs)
            advantages = normalize_advantages(advantages, traj.mask)
        # 2. Several clipped policy steps on the same batch.
        for _ in range(cfg.epochs):
            log_probs, entropy = policy_log_probs(policy, traj)
            policy_loss = ppo_clip_loss(log_probs, old_log_probs, advantages, traj.mask, cfg.clip)
            guard.step(optimizer, policy_loss - cfg.entropy_coef * masked_mean(entropy, traj.mask), policy.parameters())
        # 3. Fit the critic to the GAE targets (in units of its output scale, so the loss is O(1)).
        for _ in range(cfg.critic_steps):
            critic_loss = value_loss(critic(traj.obs) / critic.scale, targets / critic.scale, traj.mask)
            critic_guard.step(critic_opt, critic_loss, critic.parameters())

        seconds = time.perf_counter() - start
        mean_return = float(traj.returns.mean())
        _log_row(result.history, iteration=it, env_steps=env_steps, seconds=seconds, mean_return=mean_return,
                 loss=float(policy_loss.detach()), entropy=float(masked_mean(entropy.detach(), traj.mask)),
                 value_loss=float(critic_loss.detach()), grad_norm=guard.last_grad_norm)
        if cfg.target_return is not None and mean_return >= cfg.eval_trigger and _solve_check(policy, tasks, cfg, seed, result):
            result.solved, result.solved_at_seconds, result.solved_at_steps = True, time.perf_counter() - start, env_steps
            break
        if seconds >= cfg.max_seconds or (cfg.max_env_steps is not None and env_steps >= cfg.max_env_steps):
            break
    result.skipped_updates, result.applied_updates = guard.skipped + critic_guard.skipped, guard.applied
    return result

"""Policy-gradient maths on tensors: returns, GAE, baselines, advantages, losses and the
update guard.

Plain functions of tensors (log-probabilities, advantages and a mask of played steps),
so the same code serves a normal `nn.Module` and MAML's functional weights. Every
average over played steps can be *balanced over tasks* (`n_tasks`): averaged within each
task first, then over tasks, so that every task weighs the same however many steps it
played (see `masked_mean`). The training loops that use them are in
`ssm_metarl.rl.loops`. Taught in chapter 2 (`book/02_cartpole_tasks.md`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterable

import torch

from ..io.validation import check_positive, check_unit_interval

__all__ = [
    "masked_mean",
    "task_means",
    "discounted_returns",
    "gae",
    "batch_baseline",
    "normalize_advantages",
    "clipped_surrogate",
    "reinforce_loss",
    "ppo_clip_loss",
    "value_loss",
    "UpdateGuard",
]

log = logging.getLogger(__name__)


#
#
#
# --------------------------------------------------------------------------------------
# Returns and advantages
# --------------------------------------------------------------------------------------


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, n_tasks: int | None = None
) -> torch.Tensor:
    r"""Mean of `x` (N, T) over the played steps (`mask` True).

    Unbalanced (`n_tasks=None`): $\sum_{(i,t) \in M} x_{it} / |M|$, so every *step*
    weighs the same and a task weighs as much as the steps it played. Balanced over
    `n_tasks` task-major groups of episodes (as `ssm_metarl.cartpole.rollout.collect`
    lays them out): $\frac1n \sum_k \sum_{(i,t) \in M_k} x_{it} / |M_k|$, so every
    *task* weighs the same. The two agree when every task played equally many steps.
    Defined in chapter 2.
    """
    if n_tasks is not None:
        return task_means(_per_task(x, n_tasks), _per_task(mask, n_tasks)).mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def task_means(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each task's mean of `x` over its played steps: `x` and `mask` (n_tasks, E, T) →
    (n_tasks,).

    Defined in chapter 2 (`02_cartpole_tasks`); MAML's per-task losses in chapter 3.
    """
    m = mask.to(x.dtype)
    return (x * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp_min(1.0)


def _per_task(x: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """(N, ...) -> (n_tasks, N / n_tasks, ...), for task-major episodes."""
    if x.shape[0] % n_tasks:
        raise ValueError(
            f"{x.shape[0]} episodes do not split evenly over {n_tasks} tasks"
        )
    return x.reshape(n_tasks, -1, *x.shape[1:])


def discounted_returns(
    rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 0.99
) -> torch.Tensor:
    r"""Reward-to-go $G_t = \sum_{k \ge t} \gamma^{k-t} r_k$ of each episode, (N, T); 0
    on padding.

    The end of a collected episode is treated as terminal (also at the time limit).
    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    check_unit_interval("gamma", gamma)
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out * mask


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> torch.Tensor:
    r"""Generalised advantage estimates (Schulman et al. 2016), (N, T); 0 on padding.

    $\delta_t = r_t + \gamma V_{t+1} - V_t$, $A_t = \delta_t + \gamma\lambda A_{t+1}$,
    with $V = 0$ after the last played step. `lam=1` gives $G_t - V_t$,
    `lam=0` the one-step TD error. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    check_unit_interval("gamma", gamma)
    check_unit_interval("lam", lam)
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
    """The batch baseline: at each time step, the mean return-to-go of the episodes
    still playing. (N, T).

    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    m = mask.to(returns.dtype)
    per_step = (returns * m).sum(dim=0) / m.sum(dim=0).clamp_min(1.0)
    return per_step.expand_as(returns) * m


def normalize_advantages(
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-8,
    n_tasks: int | None = None,
) -> torch.Tensor:
    """Zero mean, unit standard deviation over the played steps; with `n_tasks`, within
    each task's episodes separately (a task with large returns then does not set every
    task's scale). Defined in chapter 2 (`02_cartpole_tasks`).
    """
    if n_tasks is not None:
        per_task = [
            normalize_advantages(a, m, eps)
            for a, m in zip(_per_task(advantages, n_tasks), _per_task(mask, n_tasks))
        ]
        return torch.cat(per_task)
    mean = masked_mean(advantages, mask)
    std = masked_mean((advantages - mean) ** 2, mask).sqrt()
    return (advantages - mean) / (std + eps) * mask


#
#
#
# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def reinforce_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    n_tasks: int | None = None,
) -> torch.Tensor:
    r"""REINFORCE (Williams 1992):
    $-\frac{1}{|M|}\sum_{(i,t)\in M} \log\pi(a_t|h_t)\,A_t$ (`n_tasks`: balanced over
    tasks, see `masked_mean`).

    `advantages` are treated as constants. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    return -masked_mean(log_probs * advantages.detach(), mask, n_tasks)


def clipped_surrogate(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float = 0.2,
) -> torch.Tensor:
    r"""PPO's per-step clipped surrogate
    $\min(\rho_t A_t, \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t)$,
    $\rho_t = \pi(a_t)/\pi_{old}(a_t)$, any shape; old log-probabilities and advantages
    are constants. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    check_positive("clip", clip)
    ratio = torch.exp(log_probs - old_log_probs.detach())
    advantages = advantages.detach()
    return torch.minimum(
        ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages
    )


def ppo_clip_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    n_tasks: int | None = None,
) -> torch.Tensor:
    r"""PPO's clipped surrogate (Schulman et al. 2017), averaged over played steps and
    negated to be minimised:
    $-\mathbb{E}[\min(\rho_t A_t,\ \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)
    A_t)]$
    (`n_tasks`: balanced over tasks, see `masked_mean`). Defined in chapter 2
    (`02_cartpole_tasks`).
    """
    return -masked_mean(
        clipped_surrogate(log_probs, old_log_probs, advantages, clip), mask, n_tasks
    )


def value_loss(
    values: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error of a value estimate over the played steps. Defined in
    chapter 2."""
    return masked_mean((values - targets.detach()) ** 2, mask)


@dataclass
class UpdateGuard:
    """Clip gradients and refuse updates with a non-finite loss or gradient, counting
    each refusal.

    `guard.step(optimizer, loss, params)` returns True when it updated the weights.
    Broken RL code fails silently; a skipped update here is never silent: see `skipped`.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    max_grad_norm: float | None = 0.5
    skipped: int = 0
    applied: int = 0
    last_grad_norm: float = float("nan")

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor,
        parameters: Iterable[torch.Tensor],
    ) -> bool:
        parameters = [p for p in parameters if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.skipped += 1
            log.warning(
                "non-finite loss %s: update skipped (%d so far)",
                float(loss.detach()),
                self.skipped,
            )
            return False
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(
            parameters, self.max_grad_norm if self.max_grad_norm else math.inf
        )
        self.last_grad_norm = float(norm)
        if not math.isfinite(self.last_grad_norm):
            optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            log.warning(
                "non-finite gradient norm: update skipped (%d so far)", self.skipped
            )
            return False
        optimizer.step()
        self.applied += 1
        return True

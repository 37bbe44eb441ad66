"""MAML for reinforcement learning on CartPole task families: the run's config, task
batches and the policy-gradient loss (chapter 3).

`task_batch` turns collected episodes into a batch with a leading task dimension, and
`policy_gradient_loss` is the inner and outer loss `MetaMAML` differentiates. Scoring
a policy before and after adaptation, and the model cards' protocol, are in
`ssm_metarl.meta.evaluation`; the training run (`meta_epoch`, `meta_train`) is in
`ssm_metarl.meta.training`. Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..cartpole.trajectories import Trajectories
from ..io.validation import check_choice, check_int, check_positive, check_unit_interval
from ..models.policy import (
    SSMPolicy,
    TaskBatchedPolicy,
    action_log_probs,
    policy_log_probs,
)
from ..rl.losses import (
    batch_baseline,
    clipped_surrogate,
    discounted_returns,
    normalize_advantages,
    ppo_clip_loss,
    task_means,
)
from .maml import METHODS
from .per_task import Params, TaskBatchedLoss

__all__ = [
    "MetaRLConfig",
    "task_batch",
    "policy_gradient_loss",
    "TaskPolicy",
    "inner_params",
]


@dataclass
class MetaRLConfig:
    """Everything `meta_train` needs. Field names follow the model card's flags
    (chapter 3)."""

    # task family (`ssm_metarl.cartpole.tasks.FAMILIES`); the hidden goal needs
    # adaptation
    family: str = "goal"
    # one of METHODS: second-order MAML, first-order MAML, ANIL (head-only inner
    # loop) or multi-task training
    mode: str = "maml"
    epochs: int = 300  # outer updates (the card: 50)
    tasks_per_epoch: int = 20  # tasks per outer update, the meta-batch (the card: 5)
    # episodes per task for the inner step (support) and again for the outer loss
    # (query)
    episodes: int = 10
    # inner policy-gradient steps; evaluate with the same number
    adaptation_steps: int = 1
    inner_lr: float = 0.01  # alpha (the card: 0.01)
    # Adam's learning rate for the initialisation (the card: 0.001)
    outer_lr: float = 0.001
    gamma: float = 0.99  # discount of the returns-to-go
    # PPO clip of the importance ratio; only active from the second inner step on
    clip: float = 0.2
    max_grad_norm: float = 1.0  # outer-gradient clipping
    eval_every: int = 10  # validate (and maybe select) every this many epochs
    eval_episodes: int = 10  # episodes per validation task after adapting
    # evaluate the adapted policy with argmax actions instead of sampling
    greedy_eval: bool = False
    seed: int = 0

    def __post_init__(self):
        check_choice("mode", self.mode, METHODS)
        for name in (
            "epochs",
            "tasks_per_epoch",
            "episodes",
            "eval_every",
            "eval_episodes",
        ):
            check_int(name, getattr(self, name))
        check_int("adaptation_steps", self.adaptation_steps, minimum=0)
        for name in ("inner_lr", "outer_lr", "clip", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        check_unit_interval("gamma", self.gamma)

    def to_dict(self) -> dict:
        return asdict(self)


def inner_params(mode: str) -> tuple[str, ...] | None:
    """The weights a method's inner loop adapts: the output head for ANIL, all of them
    otherwise (chapter 3)."""
    from ..models.ssm import OUTPUT_HEAD

    return OUTPUT_HEAD if mode == "anil" else None


def _seed(*parts: int) -> int:
    """A deterministic seed from integers (so iteration `i` of a resumed run sees the
    same data)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**31 - 1)
    return value


def _base(policy) -> SSMPolicy:
    """A model (e.g. `ssm_metarl.StateSpaceModel`) as an `SSMPolicy`; an SSMPolicy as it
    is."""
    return policy if isinstance(policy, SSMPolicy) else SSMPolicy(policy)


def TaskPolicy(
    model, params: Params, episodes_per_task: int | None = None
) -> TaskBatchedPolicy:
    """The adapted policies of a meta-batch: `model` with per-task `params` (old name,
    chapter 3)."""
    return TaskBatchedPolicy(_base(model), params)


def task_batch(
    policy, traj: Trajectories, n_tasks: int, gamma: float = 0.99
) -> dict[str, torch.Tensor]:
    """Turn collected episodes into a policy-gradient batch with a leading task
    dimension.

    Advantages are the returns-to-go minus the per-task batch baseline, normalised
    within each task (`ssm_metarl.rl.losses`). `old_log_probs` are the log-probabilities
    of the actions under `policy`, the policy that collected them. Defined in chapter 3.
    """
    with torch.no_grad():
        old_log_probs, _ = policy_log_probs(policy, traj)
        returns = discounted_returns(traj.rewards, traj.mask, gamma)
    per_task = lambda x: x.reshape(n_tasks, -1, *x.shape[1:])
    returns, mask = per_task(returns), per_task(traj.mask)
    advantages = torch.func.vmap(
        lambda g, m: normalize_advantages(g - batch_baseline(g, m), m)
    )(returns, mask)
    return {
        "obs": per_task(traj.obs),
        "actions": per_task(traj.actions),
        "rewards": per_task(traj.rewards),
        "mask": mask,
        "advantages": advantages,
        "old_log_probs": per_task(old_log_probs),
    }


def policy_gradient_loss(policy, clip: float = 0.2) -> TaskBatchedLoss:
    r"""The policy-gradient surrogate of `ssm_metarl.rl.losses` as a MAML loss, for
    `policy` (a model or an SSMPolicy).

    It is PPO's clipped surrogate, $-\mathbb{E}[\min(\rho A, \mathrm{clip}(\rho) A)]$
    with $\rho = \pi_\theta(a|h)/\pi_{old}(a|h)$. At the weights that collected the data
    $\rho = 1$, so its gradient is exactly REINFORCE's; its second derivative keeps the
    $\nabla\log\pi\,\nabla\log\pi^\top A$ term that `-log pi * A` drops (the "LVC"
    surrogate of ProMP, Rothfuss et al. 2019). Log-probabilities are recomputed by
    teacher forcing (backpropagation through time). The loss is a
    `ssm_metarl.meta.maml.TaskBatchedLoss`: every task's weights run on its own episodes
    as batched matmuls; its `one_task` form is the same loss for one task, which
    `MetaMAML` maps with `vmap`: the same numbers. `batch["rewards"]` is needed only by
    policies that see rewards. Defined in chapter 3 (`03_maml`).
    """
    base = _base(policy)

    def rewards(batch):
        return (
            batch["rewards"]
            if "rewards" in batch
            else torch.zeros_like(batch["advantages"])
        )

    def batched(params: Params, batch: dict) -> torch.Tensor:
        logits = TaskBatchedPolicy(base, params).logits(
            batch["obs"], batch["actions"], rewards(batch)
        )
        log_probs, _ = action_log_probs(logits, batch["actions"])
        surrogate = clipped_surrogate(
            log_probs, batch["old_log_probs"], batch["advantages"], clip
        )
        return -task_means(surrogate, batch["mask"])

    def one_task(params: Params, batch: dict) -> torch.Tensor:
        logits = type(base)(base.model, params).logits(
            batch["obs"], batch["actions"], rewards(batch)
        )
        log_probs, _ = action_log_probs(logits, batch["actions"])
        return ppo_clip_loss(
            log_probs, batch["old_log_probs"], batch["advantages"], batch["mask"], clip
        )

    return TaskBatchedLoss(batched, one_task)

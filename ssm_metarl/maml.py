"""MAML: model-agnostic meta-learning on ``torch.func``, for feed-forward and stateful models.

MAML (Finn et al. 2017) learns an initialisation ``theta`` such that one (or a few)
gradient steps on a new task's small support set give good weights for that task:

    theta_i' = theta - alpha * grad L_i(theta; support_i)          (inner step, per task)
    theta   <- theta - beta * grad_theta mean_i L_i(theta_i'; query_i)   (outer step)

The outer gradient goes *through* the inner step (second order); first-order MAML treats
the inner gradient as a constant. Every task of a meta-batch is processed in one batched
graph: :func:`torch.func.vmap` maps the inner step over a leading task dimension (any
model), or, for the SSM, hand-written batched matmuls do the same faster; either way the
per-task weights are tensors of shape ``(n_tasks, *param.shape)``. The RL part (inner policy-gradient steps on CartPole task families) is
further down. Taught in chapter 3 (``book/03_maml.md``).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from . import rl, rollout
from .checkpoint import load_checkpoint, save_checkpoint
from .progress import progress_bar
from .ssm import StateSpaceModel
from .stats import Estimate, bootstrap_ci
from .tasks import get_family

__all__ = [
    "MetaMAML", "MetaStep", "unroll", "stack_params", "ssm_step", "ssm_outputs",
    "MODES", "MetaRLConfig", "TaskPolicy", "task_batch", "policy_gradient_loss",
    "AdaptationResult", "evaluate_adaptation", "held_out_tasks", "tune_inner_lr", "TEST_SEED", "INNER_LRS",
    "MetaTrainResult", "meta_train",
]

log = logging.getLogger(__name__)

Params = dict[str, torch.Tensor]
#: ``loss_fn(params, batch) -> scalar`` for ONE task; ``batch`` is any pytree of tensors.
#: A loss marked ``loss_fn.task_batched = True`` instead takes weights and data with a leading
#: task dimension and returns the (n_tasks,) losses, computed with batched matmuls.
LossFn = Callable[[Params, Any], torch.Tensor]


def unroll(model: nn.Module, params: Params, xs: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Outputs (B, T, out) of a stateful model run over ``xs`` (B, T, in) with weights ``params``.

    The model needs ``init_hidden(batch_size)`` and ``forward(x, h) -> (y, h_next)``, like
    :class:`~ssm_metarl.ssm.StateSpaceModel`. Each step is a ``functional_call``, so the
    outputs are differentiable with respect to ``params`` (also under ``vmap`` and
    ``grad``), and the recurrence is unrolled through time: backpropagation through time.
    Defined in chapter 3 (``03_maml``).
    """
    if hidden is None:
        hidden = torch.zeros(xs.shape[0], model.state_dim, dtype=xs.dtype, device=xs.device)
    outputs = []
    for t in range(xs.shape[1]):
        y, hidden = functional_call(model, params, (xs[:, t], hidden))
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def _linear(params: Params, name: str, x: torch.Tensor) -> torch.Tensor:
    """``x @ W.T + b`` with any leading dims; with a task dim on W it is a batched matmul."""
    return torch.matmul(x, params[name + ".weight"].transpose(-1, -2)) + params[name + ".bias"].unsqueeze(-2)


def ssm_step(model: nn.Module, params: Params, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of :class:`~ssm_metarl.ssm.StateSpaceModel` with per-task weights, as batched matmuls.

    ``params`` hold a leading task dimension (n, ...); ``x`` is (n, B, input_dim) and
    ``hidden`` (n, B, state_dim). The same equations as ``StateSpaceModel.forward`` (a test
    checks it), written so that each linear map is one batched matmul over all tasks.
    Defined in chapter 3 (``03_maml``).
    """
    pre = _linear(params, "transition.2", torch.relu(_linear(params, "transition.0", hidden))) + _linear(params, "input_map", x)
    hidden = torch.tanh(pre) if model.config.bounded else pre
    y = _linear(params, "readout.2", torch.relu(_linear(params, "readout.0", hidden))) + _linear(params, "feedthrough", x)
    return y, hidden


def ssm_outputs(model: nn.Module, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """Outputs (n, B, T, out) of a StateSpaceModel with per-task weights over ``obs`` (n, B, T, in), from h=0.

    Only the transition is sequential: the input drive ``B x_t``, the readout ``C(h_t)`` and
    the feedthrough ``D x_t`` run once over all T steps as batched matmuls.
    Defined in chapter 3 (``03_maml``).
    """
    n, batch, steps, _ = obs.shape
    flat = obs.reshape(n, batch * steps, -1)
    drive = _linear(params, "input_map", flat).reshape(n, batch, steps, -1)
    hidden = obs.new_zeros(n, batch, model.state_dim)
    states = []
    for t in range(steps):
        pre = _linear(params, "transition.2", torch.relu(_linear(params, "transition.0", hidden))) + drive[:, :, t]
        hidden = torch.tanh(pre) if model.config.bounded else pre
        states.append(hidden)
    states = torch.stack(states, dim=2).reshape(n, batch * steps, -1)
    y = _linear(params, "readout.2", torch.relu(_linear(params, "readout.0", states))) + _linear(params, "feedthrough", flat)
    return y.reshape(n, batch, steps, -1)


def stack_params(per_task: list[Params]) -> Params:
    """Stack a list of per-task weight dicts into one dict with a leading task dimension."""
    return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}


def _concat(per_task: list[Params]) -> Params:
    return {k: torch.cat([p[k] for p in per_task]) for k in per_task[0]}


@dataclass
class MetaStep:
    """What one outer update did: the meta-loss, the gradient norm before clipping, and
    whether the update was applied (``False`` when the loss or gradient was not finite)."""

    loss: float
    grad_norm: float
    applied: bool

    def to_dict(self) -> dict:
        return asdict(self)


class MetaMAML:
    """Model-agnostic meta-learning of ``model``'s weights, batched over tasks.

    Parameters
    ----------
    model : the module whose weights are the meta-learned initialisation (updated in place
        by :meth:`step`).
    inner_lr : alpha, the inner (adaptation) step size. The model card uses 0.01.
    outer_lr : beta, Adam's learning rate for the initialisation. The model card uses 0.001.
    first_order : drop the second-order term (FOMAML): the inner gradient is a constant.
    inner_steps : how many inner gradient steps :meth:`adapt` takes by default.
    max_grad_norm : the outer gradient is clipped to this norm before Adam's step.
    batched : ``True`` maps the inner loop over tasks with ``vmap`` (one graph); ``False``
        loops over tasks in Python. Both give the same numbers; the loop exists for tests
        and for ``python -m ssm_metarl bench maml``.

    Defined in chapter 3 (``03_maml``).
    """

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, outer_lr: float = 0.001,
                 first_order: bool = False, inner_steps: int = 1, max_grad_norm: float = 1.0,
                 batched: bool = True):
        for name, value in (("inner_lr", inner_lr), ("outer_lr", outer_lr), ("max_grad_norm", max_grad_norm)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not isinstance(inner_steps, int) or isinstance(inner_steps, bool) or inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps!r}")
        self.model = model
        self.inner_lr = float(inner_lr)
        self.outer_lr = float(outer_lr)
        self.first_order = bool(first_order)
        self.inner_steps = inner_steps
        self.max_grad_norm = float(max_grad_norm)
        self.batched = bool(batched)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.outer_lr)
        self.updates = 0  # outer updates applied
        self.skipped_updates = 0  # outer updates refused by the non-finite guard

    def params(self) -> Params:
        """The current initialisation ``theta`` as a dict of the model's parameters."""
        return dict(self.model.named_parameters())

    def inner_update(self, loss_fn: LossFn, params: Params, batch: Any, lr: float | None = None) -> Params:
        """One inner step ``theta' = theta - alpha * grad L(theta; batch)`` for ONE task.

        Second order keeps the graph of the gradient, so the outer gradient flows through
        it; first order computes the gradient at detached weights, so ``d theta'/d theta``
        is the identity.
        """
        lr = self.inner_lr if lr is None else lr
        at = {k: v.detach() for k, v in params.items()} if self.first_order else params
        grads = grad(loss_fn)(at, batch)
        return {k: params[k] - lr * grads[k] for k in params}

    def adapt(self, loss_fn: LossFn, support: Any, steps: int | None = None,
              params: Params | None = None, lr: float | None = None) -> Params:
        """Adapted weights for every task at once: each tensor gets a leading task dimension.

        ``support`` is a pytree whose tensors all have the task dimension first. The start
        is ``params``: shared weights (no task dimension), or per-task weights (with one),
        or, by default, the model's current weights, in which case the result stays
        differentiable with respect to them (that is what the outer step needs).
        """
        steps = self.inner_steps if steps is None else steps
        params = self.params() if params is None else params
        n = _num_tasks(support)
        reference = dict(self.model.named_parameters())
        per_task = all(v.dim() == reference[k].dim() + 1 for k, v in params.items())
        start = params if per_task else _expand(params, n)
        if steps == 0:
            return start
        if getattr(loss_fn, "task_batched", False):
            if self.batched:
                return self._adapt_task_batched(loss_fn, start, support, steps, lr)
            return _concat([self._adapt_task_batched(loss_fn, p, task, steps, lr)
                            for p, task in zip(_unbind(start, keep_dim=True), _unbind(support, keep_dim=True))])

        def one_task(p, batch):
            for _ in range(steps):
                p = self.inner_update(loss_fn, p, batch, lr)
            return p

        if self.batched:
            if per_task:
                return vmap(one_task)(start, support)
            return vmap(one_task, in_dims=(None, 0))(params, support)
        return stack_params([one_task(params if not per_task else p, task)
                             for p, task in zip(_unbind(start), _unbind(support))])

    def _adapt_task_batched(self, loss_fn: LossFn, params: Params, support: Any, steps: int, lr: float | None) -> Params:
        """Inner steps for all tasks at once with a task-batched loss.

        Task i's loss depends only on weights i, so the gradient of the *sum* of the task
        losses with respect to weights i is exactly task i's own gradient.
        """
        lr = self.inner_lr if lr is None else lr
        for _ in range(steps):
            at = {k: v.detach().requires_grad_() for k, v in params.items()} if self.first_order else params
            losses = loss_fn(at, support)
            grads = torch.autograd.grad(losses.sum(), list(at.values()), create_graph=not self.first_order)
            params = {k: v - lr * g for (k, v), g in zip(params.items(), grads)}
        return params

    def task_losses(self, loss_fn: LossFn, adapted: Params, data: Any) -> torch.Tensor:
        """``loss_fn`` of each task's adapted weights on that task's data: a (n_tasks,) tensor."""
        if getattr(loss_fn, "task_batched", False):
            if self.batched:
                return loss_fn(adapted, data)
            return torch.cat([loss_fn(p, d) for p, d in zip(_unbind(adapted, keep_dim=True), _unbind(data, keep_dim=True))])
        if self.batched:
            return vmap(loss_fn)(adapted, data)
        per_task = _unbind(adapted)
        return torch.stack([loss_fn(p, d) for p, d in zip(per_task, _unbind(data))])

    def meta_loss(self, loss_fn: LossFn, support: Any, query: Any, query_loss_fn: LossFn | None = None) -> torch.Tensor:
        """Mean over tasks of the query loss after adapting on the support set (differentiable in theta)."""
        adapted = self.adapt(loss_fn, support)
        return self.task_losses(query_loss_fn or loss_fn, adapted, query).mean()

    def step(self, meta_loss: torch.Tensor) -> MetaStep:
        """Backpropagate ``meta_loss`` into theta, clip, and take one Adam step.

        The non-finite guard skips (and counts in ``skipped_updates``) any update whose loss
        or gradient norm is NaN or infinite, so one bad batch cannot poison the weights.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss = float(meta_loss.detach())
        if not math.isfinite(loss):
            self.skipped_updates += 1
            log.warning("meta-loss is %s: update skipped (%d so far)", loss, self.skipped_updates)
            return MetaStep(loss, float("nan"), False)
        meta_loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm))
        if not math.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            log.warning("meta-gradient norm is %s: update skipped (%d so far)", norm, self.skipped_updates)
            return MetaStep(loss, norm, False)
        self.optimizer.step()
        self.updates += 1
        return MetaStep(loss, norm, True)

    def state_dict(self) -> dict:
        """The optimiser state and counters, for resuming (the weights live in the model)."""
        return {"optimizer": self.optimizer.state_dict(), "updates": self.updates,
                "skipped_updates": self.skipped_updates}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])


def _leaves(tree: Any) -> list[torch.Tensor]:
    return torch.utils._pytree.tree_leaves(tree)


def _num_tasks(tree: Any) -> int:
    sizes = {leaf.shape[0] for leaf in _leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"every tensor of a task batch needs the same leading task dimension, got sizes {sorted(sizes)}")
    return sizes.pop()


def _unbind(tree: Any, keep_dim: bool = False) -> list[Any]:
    """Split a task batch into one pytree per task (``keep_dim``: slices of size 1, not indices)."""
    leaves, spec = torch.utils._pytree.tree_flatten(tree)
    n = _num_tasks(tree)
    take = (lambda leaf, i: leaf[i:i + 1]) if keep_dim else (lambda leaf, i: leaf[i])
    return [torch.utils._pytree.tree_unflatten([take(leaf, i) for leaf in leaves], spec) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# MAML for reinforcement learning on CartPole task families
# ----------------------------------------------------------------------------------------------

#: How :func:`meta_train` learns an initialisation: second-order MAML, first-order MAML, or
#: the baseline that skips the inner loop (plain policy gradient on all tasks at once).
MODES = ("maml", "fomaml", "multitask")


@dataclass
class MetaRLConfig:
    """Everything :func:`meta_train` needs. Field names follow the model card's flags."""

    family: str = "goal"  # task family (``ssm_metarl.tasks.FAMILIES``); the hidden goal needs adaptation
    mode: str = "maml"  # one of MODES
    epochs: int = 300  # outer updates (the card: 50)
    tasks_per_epoch: int = 20  # tasks per outer update, the meta-batch (the card: 5)
    episodes: int = 10  # episodes per task for the inner step (support) and again for the outer loss (query)
    adaptation_steps: int = 1  # inner policy-gradient steps; evaluate with the same number
    inner_lr: float = 0.01  # alpha (the card: 0.01)
    outer_lr: float = 0.001  # Adam's learning rate for the initialisation (the card: 0.001)
    gamma: float = 0.99  # discount of the returns-to-go
    clip: float = 0.2  # PPO clip of the importance ratio; only active from the second inner step on
    max_grad_norm: float = 1.0  # outer-gradient clipping
    eval_every: int = 10  # validate (and maybe select) every this many epochs
    eval_episodes: int = 10  # episodes per validation task after adapting
    greedy_eval: bool = False  # evaluate the adapted policy with argmax actions instead of sampling
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid choices: {MODES}")
        for name in ("epochs", "tasks_per_epoch", "episodes", "eval_every", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.adaptation_steps, bool) or not isinstance(self.adaptation_steps, int) or self.adaptation_steps < 0:
            raise ValueError(f"adaptation_steps must be an int >= 0, got {self.adaptation_steps!r}")
        for name in ("inner_lr", "outer_lr", "clip", "max_grad_norm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class TaskPolicy:
    """A policy with its own weights for each task: the adapted policies of a meta-batch.

    ``params`` hold a leading task dimension. Called on the (N, 4) observations of
    :func:`ssm_metarl.rollout.collect`, whose episodes are task-major (episode ``i`` plays
    task ``i // episodes_per_task``), it runs every task's weights on that task's episodes
    in one ``vmap``-ed forward. Defined in chapter 3 (``03_maml``).
    """

    def __init__(self, model: nn.Module, params: Params, episodes_per_task: int):
        self.model = model
        self.params = {k: v.detach() for k, v in params.items()}
        self.n_tasks = next(iter(self.params.values())).shape[0]
        self.episodes_per_task = episodes_per_task
        if isinstance(model, StateSpaceModel):
            self._forward = lambda p, x, h: ssm_step(model, p, x, h)  # batched matmuls
        else:
            self._forward = vmap(lambda p, x, h: functional_call(model, p, (x, h)))

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.model.init_hidden(batch_size)

    def __call__(self, obs: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = obs.shape[0]
        if n != self.n_tasks * self.episodes_per_task:
            raise ValueError(f"expected {self.n_tasks} tasks x {self.episodes_per_task} episodes = "
                             f"{self.n_tasks * self.episodes_per_task} rows, got {n}")
        split = (self.n_tasks, self.episodes_per_task)
        y, h = self._forward(self.params, obs.reshape(*split, -1), hidden.reshape(*split, -1))
        return y.reshape(n, -1), h.reshape(n, -1)


def task_batch(policy, traj, n_tasks: int, gamma: float = 0.99) -> dict[str, torch.Tensor]:
    """Turn collected episodes into a policy-gradient batch with a leading task dimension.

    Advantages are the returns-to-go minus the per-task batch baseline, normalised within
    each task (``ssm_metarl.rl``). ``old_log_probs`` are the log-probabilities of the
    actions under ``policy``, the policy that collected them. Defined in chapter 3.
    """
    with torch.no_grad():
        old_log_probs, _ = rl.policy_log_probs(policy, traj)
        returns = rl.discounted_returns(traj.rewards, traj.mask, gamma)
    per_task = lambda x: x.reshape(n_tasks, -1, *x.shape[1:])  # noqa: E731
    returns, mask = per_task(returns), per_task(traj.mask)
    advantages = vmap(lambda g, m: rl.normalize_advantages(g - rl.batch_baseline(g, m), m))(returns, mask)
    return {"obs": per_task(traj.obs), "actions": per_task(traj.actions), "mask": mask,
            "advantages": advantages, "old_log_probs": per_task(old_log_probs)}


def policy_gradient_loss(model: nn.Module, clip: float = 0.2, fast: bool = True) -> LossFn:
    """The policy-gradient surrogate of ``ssm_metarl.rl`` as a MAML loss.

    It is PPO's clipped surrogate, :math:`-\\mathbb{E}[\\min(\\rho A, \\mathrm{clip}(\\rho) A)]`
    with :math:`\\rho = \\pi_\\theta(a|h)/\\pi_{old}(a|h)`. At the weights that collected the
    data :math:`\\rho = 1`, so its gradient is exactly REINFORCE's; its second derivative
    keeps the :math:`\\nabla\\log\\pi\\,\\nabla\\log\\pi^\\top A` term that ``-log pi * A``
    drops (the "LVC" surrogate of ProMP, Rothfuss et al. 2019). Log-probabilities are
    recomputed by running the SSM over the stored observations (backpropagation through
    time). For a :class:`~ssm_metarl.ssm.StateSpaceModel` with ``fast=True`` the loss is
    task-batched (:func:`ssm_outputs`, batched matmuls); otherwise it is a one-task loss on
    ``functional_call`` that :class:`MetaMAML` maps over tasks with ``vmap``: the same
    numbers, for any model. Defined in chapter 3 (``03_maml``).
    """
    if fast and isinstance(model, StateSpaceModel):
        def batched_loss(params: Params, batch: dict) -> torch.Tensor:
            log_probs, _ = rl.action_log_probs(ssm_outputs(model, params, batch["obs"]), batch["actions"])
            per_step = _clipped_surrogate(log_probs, batch["old_log_probs"], batch["advantages"], clip)
            mask = batch["mask"].to(per_step.dtype)
            return -(per_step * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp_min(1.0)
        batched_loss.task_batched = True
        return batched_loss

    def loss_fn(params: Params, batch: dict) -> torch.Tensor:
        outputs = rl.policy_outputs(lambda x, h: functional_call(model, params, (x, h)), batch["obs"],
                                    init_hidden=model.init_hidden)
        log_probs, _ = rl.action_log_probs(outputs, batch["actions"])
        return rl.ppo_clip_loss(log_probs, batch["old_log_probs"], batch["advantages"], batch["mask"], clip)
    return loss_fn


def _clipped_surrogate(log_probs, old_log_probs, advantages, clip):
    """The per-step term of :func:`ssm_metarl.rl.ppo_clip_loss` (that function averages over one batch)."""
    ratio = torch.exp(log_probs - old_log_probs.detach())
    advantages = advantages.detach()
    return torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)


#: Seed of the adaptation and scoring episodes on held-out test tasks (model cards, chapter 3).
TEST_SEED = 31_337


def held_out_tasks(family, n: int = 48) -> list:
    """``n`` held-out test tasks of ``family``: its fixed test split, topped up with more draws
    from the test distribution (a separate seed) when ``n`` is larger. A finite family
    ("flip": 2 tasks) repeats its tasks; each repeat adapts on its own episodes. Never used
    in training or checkpoint selection. Defined in chapter 3 (``03_maml``)."""
    tasks = list(family.test)[:n]
    if family.finite:
        return [tasks[i % len(tasks)] for i in range(n)]
    if len(tasks) < n:
        tasks += family.sample(n - len(tasks), seed=TEST_SEED, split="test")
    return tasks


#: Adaptation step sizes :func:`tune_inner_lr` tries.
INNER_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def tune_inner_lr(model: nn.Module, family, steps: int = 1, episodes: int = 10, lrs=INNER_LRS,
                  seed: int = 0) -> tuple[float, dict[float, float]]:
    """The adaptation step size that maximises the mean return after ``steps`` steps on the
    *validation* tasks of ``family``; returns ``(best_lr, {lr: mean return})``.

    Baselines that were not meta-trained for one step size (the multi-task and random
    initialisations) get their best one this way, so that MAML is compared with the
    strongest version of each. The test split is never used. Defined in chapter 3.
    """
    scores = {}
    for lr in lrs:
        result = evaluate_adaptation(model, list(family.validation), steps=(steps,), episodes=episodes,
                                     eval_episodes=episodes, inner_lr=lr, seed=_seed(seed, 424_242))
        scores[float(lr)] = float(result.returns[steps].mean())
    return max(scores, key=scores.get), scores


def _seed(*parts: int) -> int:
    """A deterministic seed from integers (so iteration ``i`` of a resumed run sees the same data)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2 ** 31 - 1)
    return value


@dataclass
class AdaptationResult:
    """Returns of a policy before and after k inner steps on each task: ``returns[k]`` is (n_tasks,).

    Each task's support episodes are collected once with the initial policy; the adapted
    policies are scored on fresh episodes. Defined in chapter 3 (``03_maml``).
    """

    steps: list[int]
    returns: dict[int, Any]  # k -> numpy array of per-task mean returns
    episodes: int
    eval_episodes: int

    def estimate(self, k: int, seed: int = 0) -> Estimate:
        """Mean over tasks of the return after ``k`` steps, with a 95% bootstrap CI."""
        return bootstrap_ci(self.returns[k], seed=seed)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "episodes": self.episodes, "eval_episodes": self.eval_episodes,
                "returns": {str(k): [float(v) for v in r] for k, r in self.returns.items()},
                "estimates": {str(k): self.estimate(k).to_dict() for k in self.steps}}


def evaluate_adaptation(model: nn.Module, tasks, steps=(0, 1), episodes: int = 10, eval_episodes: int = 10,
                        inner_lr: float = 0.01, seed: int = 0, gamma: float = 0.99, clip: float = 0.2,
                        greedy: bool = False) -> AdaptationResult:
    """Adapt ``model`` to every task with k policy-gradient steps on ``episodes`` episodes, for each k in ``steps``.

    The support episodes are collected once per task with the unadapted model (seed
    ``seed``); the k-th step reuses them (the clipped ratio corrects for the policy having
    moved). Every adapted policy is then scored on ``eval_episodes`` fresh episodes per task
    (seed ``seed + 1``). ``model`` is not modified. Defined in chapter 3 (``03_maml``).
    """
    tasks = list(tasks)
    steps = sorted(set(int(k) for k in steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"steps must be non-negative ints, got {steps}")
    n = len(tasks)
    maml = MetaMAML(model, inner_lr=inner_lr, first_order=True)
    loss_fn = policy_gradient_loss(model, clip)
    support = task_batch(model, rollout.collect(model, tasks, episodes, seed=seed), n, gamma)
    params = {k: v.detach().expand(n, *v.shape) for k, v in maml.params().items()}
    returns, done = {}, 0
    for k in steps:
        if k > done:
            params = {name: v.detach() for name, v in maml.adapt(loss_fn, support, steps=k - done, params=params).items()}
            done = k
        traj = rollout.collect(TaskPolicy(model, params, eval_episodes), tasks, eval_episodes, seed=seed + 1,
                               greedy=greedy)
        returns[k] = traj.returns.reshape(n, eval_episodes).mean(dim=1).double().numpy()
    return AdaptationResult(steps, returns, episodes, eval_episodes)


@dataclass
class MetaTrainResult:
    """What :func:`meta_train` did. ``history`` has one row per epoch (pre- and post-update
    returns, loss, gradient norm, wall time); ``validation`` one row per validation."""

    config: dict
    history: dict[str, list]
    validation: dict[str, list]
    best_epoch: int | None  # epoch whose weights were kept (selected on validation tasks)
    best_validation: float | None
    seconds: float  # wall time of this process's part of the run
    total_seconds: float  # wall time summed over resumed parts
    env_steps: int
    skipped_updates: int
    resumed_from: int  # first epoch run by this process (0 unless resumed)
    stopped_early: bool = False  # the time budget ended the run before ``epochs``

    def to_dict(self) -> dict:
        return asdict(self)


def meta_train(model: nn.Module, config: MetaRLConfig | None = None, checkpoint: str | None = None,
               resume: bool = True, progress: bool = True, max_seconds: float | None = None) -> MetaTrainResult:
    """Meta-train ``model`` (in place) on a CartPole task family; return the log.

    One epoch: sample ``tasks_per_epoch`` training tasks; collect ``episodes`` support
    episodes per task with the current policy; adapt with ``adaptation_steps`` inner
    policy-gradient steps (all tasks in one ``vmap``); collect ``episodes`` query episodes per
    task with each task's adapted policy; take one outer Adam step on the query loss,
    differentiated through the inner steps. ``mode="multitask"`` skips the inner loop and
    steps on all 2 x ``episodes`` episodes per task: the same data, no meta-learning.

    Every ``eval_every`` epochs the policy is adapted to the fixed *validation* tasks and
    scored; the best-scoring weights are loaded into ``model`` at the end (the test split
    is never looked at). With ``checkpoint`` set, the run state (weights, Adam, log, best
    weights) is saved atomically to that path at each validation, and ``resume=True``
    continues from it with identical results, because every epoch's tasks and episodes
    are seeded by (seed, epoch). ``max_seconds`` stops early, after a validation, once that
    much wall time has passed (``stopped_early`` then says so; resuming continues the run).
    Defined in chapter 3 (``03_maml``).
    """
    cfg = config or MetaRLConfig()
    family = get_family(cfg.family)
    validation_tasks = list(family.validation)
    maml = MetaMAML(model, cfg.inner_lr, cfg.outer_lr, first_order=(cfg.mode == "fomaml"),
                    inner_steps=cfg.adaptation_steps, max_grad_norm=cfg.max_grad_norm)
    loss_fn = policy_gradient_loss(model, cfg.clip)
    n = cfg.tasks_per_epoch
    history: dict[str, list] = {}
    validation: dict[str, list] = {}
    best_state, best_epoch, best_score = None, None, -math.inf
    start_epoch, env_steps, previous_seconds = 0, 0, 0.0

    if checkpoint is not None and resume and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint, kind="MetaTrainState")
        changed = sorted(k for k in cfg.to_dict() if k != "epochs" and state.config.get(k) != getattr(cfg, k))
        if changed:  # more epochs is fine: that extends the run
            raise ValueError(f"{checkpoint} was written with a different config (differs in {changed}); "
                             "pass resume=False or another checkpoint path")
        model.load_state_dict(state.state_dict)
        maml.load_state_dict(state.extra["maml"])
        history, validation = state.extra["history"], state.extra["validation"]
        best_state, best_epoch = state.extra["best_state"], state.extra["best_epoch"]
        best_score = state.extra["best_score"]
        start_epoch, env_steps = state.extra["next_epoch"], state.extra["env_steps"]
        previous_seconds = state.extra["seconds"]
        log.info("resumed %s at epoch %d", checkpoint, start_epoch)

    def validate(epoch: int) -> None:
        nonlocal best_state, best_epoch, best_score
        result = evaluate_adaptation(model, validation_tasks, steps=(0, cfg.adaptation_steps), episodes=cfg.episodes,
                                     eval_episodes=cfg.eval_episodes, inner_lr=cfg.inner_lr,
                                     seed=_seed(cfg.seed, 999_983), gamma=cfg.gamma, clip=cfg.clip,
                                     greedy=cfg.greedy_eval)
        pre, post = float(result.returns[0].mean()), float(result.returns[cfg.adaptation_steps].mean())
        _append(validation, epoch=epoch, pre=pre, post=post)
        log.info("epoch %d: validation return %.1f before, %.1f after %d step(s); last batch %.1f -> %.1f",
                 epoch, pre, post, cfg.adaptation_steps, history["pre_return"][-1], history["post_return"][-1])
        # MAML is selected on what it is trained for, the return after adapting; the multi-task
        # baseline on its own objective, the return without adapting (its best adaptation step
        # size is chosen later, also on validation tasks: see ``tune_inner_lr``).
        score = pre if cfg.mode == "multitask" else post
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def save(next_epoch: int, seconds: float) -> None:
        extra = {"maml": maml.state_dict(), "history": history, "validation": validation, "best_state": best_state,
                 "best_epoch": best_epoch, "best_score": best_score, "next_epoch": next_epoch,
                 "env_steps": env_steps, "seconds": seconds}
        save_checkpoint(checkpoint, kind="MetaTrainState", config=cfg.to_dict(), state_dict=model.state_dict(),
                        extra=extra)

    start, stopped_early = time.perf_counter(), False
    bar = progress_bar(range(start_epoch, cfg.epochs), enabled=progress, initial=start_epoch, total=cfg.epochs,
                       desc=f"meta-train {cfg.mode}")
    for epoch in bar:
        tasks = family.sample(n, seed=_seed(cfg.seed, epoch, 1), split="train")
        if cfg.mode == "multitask":
            support = rollout.collect(model, tasks, 2 * cfg.episodes, seed=_seed(cfg.seed, epoch, 2))
            batch = task_batch(model, support, n, cfg.gamma)
            loss = maml.task_losses(loss_fn, _expand(maml.params(), n), batch).mean()
            query = support
        else:
            support = rollout.collect(model, tasks, cfg.episodes, seed=_seed(cfg.seed, epoch, 2))
            adapted = maml.adapt(loss_fn, task_batch(model, support, n, cfg.gamma))
            policy = TaskPolicy(model, adapted, cfg.episodes)
            query = rollout.collect(policy, tasks, cfg.episodes, seed=_seed(cfg.seed, epoch, 3))
            loss = maml.task_losses(loss_fn, adapted, task_batch(policy, query, n, cfg.gamma)).mean()
        step = maml.step(loss)
        env_steps += support.num_steps + (query.num_steps if query is not support else 0)
        pre, post = float(support.returns.mean()), float(query.returns.mean())
        _append(history, epoch=epoch, pre_return=pre, post_return=post, loss=step.loss, grad_norm=step.grad_norm,
                applied=step.applied, env_steps=env_steps, seconds=previous_seconds + time.perf_counter() - start)
        bar.set_postfix(pre=f"{pre:.0f}", post=f"{post:.0f}")
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            validate(epoch)
            if checkpoint is not None:
                save(epoch + 1, previous_seconds + time.perf_counter() - start)
            if max_seconds is not None and time.perf_counter() - start >= max_seconds and epoch + 1 < cfg.epochs:
                stopped_early = True
                log.info("time budget of %.0f s used up after epoch %d", max_seconds, epoch)
                break
    bar.close()
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    return MetaTrainResult(cfg.to_dict(), history, validation, best_epoch,
                           None if best_epoch is None else best_score, seconds, previous_seconds + seconds,
                           env_steps, maml.skipped_updates, start_epoch, stopped_early)


def _append(table: dict, **row) -> None:
    for key, value in row.items():
        table.setdefault(key, []).append(value)


def _expand(params: Params, n: int) -> Params:
    return {k: v.expand(n, *v.shape) for k, v in params.items()}

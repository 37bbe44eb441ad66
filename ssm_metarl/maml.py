"""MAML: model-agnostic meta-learning on ``torch.func``, for feed-forward and stateful models.

MAML {Finn et al. 2017} learns an initialisation ``theta`` such that one (or a few)
gradient steps on a new task's small support set give good weights for that task:

    theta_i' = theta - alpha * grad L_i(theta; support_i)          (inner step, per task)
    theta   <- theta - beta * grad_theta mean_i L_i(theta_i'; query_i)   (outer step)

The outer gradient goes *through* the inner step (second order); first-order MAML treats
the inner gradient as a constant. Every task of a meta-batch is processed in one batched
graph: :func:`torch.func.vmap` maps the inner step over a leading task dimension, so the
per-task weights are tensors of shape ``(n_tasks, *param.shape)`` and every matmul is a
batched one. The RL part (inner policy-gradient steps on CartPole task families) is
further down. Taught in chapter 3 (``book/03_maml.md``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["MetaMAML", "MetaStep", "unroll", "stack_params"]

log = logging.getLogger(__name__)

Params = dict[str, torch.Tensor]
#: ``loss_fn(params, batch) -> scalar`` for ONE task; ``batch`` is any pytree of tensors.
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


def stack_params(per_task: list[Params]) -> Params:
    """Stack a list of per-task weight dicts into one dict with a leading task dimension."""
    return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}


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

        ``support`` is a pytree whose tensors all have the task dimension first;
        ``loss_fn`` sees one task's slice. With ``params=None`` the model's current weights
        are the starting point, and the result stays differentiable with respect to them.
        """
        steps = self.inner_steps if steps is None else steps
        params = self.params() if params is None else params

        def one_task(batch):
            adapted = params
            for _ in range(steps):
                adapted = self.inner_update(loss_fn, adapted, batch, lr)
            return adapted

        if self.batched:
            if steps == 0:
                n = _num_tasks(support)
                return {k: v.expand(n, *v.shape) for k, v in params.items()}
            return vmap(one_task)(support)
        return stack_params([one_task(task) for task in _unbind(support)])

    def task_losses(self, loss_fn: LossFn, adapted: Params, data: Any) -> torch.Tensor:
        """``loss_fn`` of each task's adapted weights on that task's data: a (n_tasks,) tensor."""
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

    def meta_step(self, loss_fn: LossFn, support: Any, query: Any) -> MetaStep:
        """One full supervised MAML iteration: adapt on ``support``, evaluate on ``query``, update."""
        return self.step(self.meta_loss(loss_fn, support, query))

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


def _unbind(tree: Any) -> list[Any]:
    leaves, spec = torch.utils._pytree.tree_flatten(tree)
    n = _num_tasks(tree)
    return [torch.utils._pytree.tree_unflatten([leaf[i] for leaf in leaves], spec) for i in range(n)]

"""MAML: model-agnostic meta-learning on `torch.func`, for feed-forward and stateful
models (chapter 3).

MAML (Finn et al. 2017) learns an initialisation `theta` such that one (or a few)
gradient steps on a new task's small support set give good weights for that task:

    theta_i' = theta - alpha * grad L_i(theta; support_i)         (inner step, per task)
    theta <- theta - beta * grad_theta mean_i L_i(theta_i'; query_i)        (outer step)

The outer gradient goes *through* the inner step (second order); first-order MAML treats
the inner gradient as a constant. Every task of a meta-batch is processed in one batched
graph, the per-task weights being tensors of shape `(n_tasks, *param.shape)`
(`ssm_metarl.meta.per_task`). A loss comes in one of two forms, told apart by its type:
a plain function `loss(params, batch) -> scalar` for ONE task, which `MetaMAML` maps
over tasks with `torch.func.vmap`; or a `TaskBatchedLoss`, which takes weights and data
with the task dimension and returns the (n_tasks,) losses itself (e.g. with batched
matmuls). This module knows nothing about reinforcement learning; MAML-RL is
`ssm_metarl.meta.maml_rl`. Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap

from ..io.validation import check_int, check_positive
from .per_task import (
    LossFn,
    Params,
    TaskBatchedLoss,
    concat_params,
    expand_params,
    num_tasks,
    split_tasks,
    stack_params,
)

__all__ = ["MetaMAML", "MetaStep", "METHODS"]

log = logging.getLogger(__name__)

#: Ways to learn an initialisation: second-order MAML, first-order MAML, ANIL (MAML
#: whose inner loop moves only the output head, Raghu et al. 2020), or the baseline
#: that skips the inner loop and trains on all tasks at once (chapter 3).
METHODS = ("maml", "fomaml", "anil", "multitask")


@dataclass
class MetaStep:
    """What one outer update did: the meta-loss, the gradient norm before clipping, and
    whether the update was applied (`False` when the loss or gradient was not finite).
    Chapter 3."""

    loss: float
    grad_norm: float
    applied: bool

    def to_dict(self) -> dict:
        return asdict(self)


class MetaMAML:
    """Model-agnostic meta-learning of `model`'s weights, batched over tasks.

    Parameters
    ----------
    model : the module whose weights are the meta-learned initialisation (updated in
        place by `step`).
    inner_lr : alpha, the inner (adaptation) step size. The model card uses 0.01.
    outer_lr : beta, Adam's learning rate for the initialisation. The model card uses
        0.001.
    first_order : drop the second-order term (FOMAML): the inner gradient is a constant.
    inner_steps : how many inner gradient steps `adapt` takes by default.
    max_grad_norm : the outer gradient is clipped to this norm before Adam's step.
    inner_params : name prefixes of the weights the inner loop adapts (ANIL passes the
        output head's); `None` adapts them all. The others keep the shared
        initialisation, and the outer step still trains them through the inner one.
    batched : `True` runs all tasks in one graph (`vmap` over a one-task loss, or a
        `TaskBatchedLoss` called once); `False` loops over tasks in Python. Both give
        the same numbers; the loop exists for tests and for
        `python -m ssm_metarl bench maml`.

    Defined in chapter 3 (`03_maml`).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        outer_lr: float = 0.001,
        first_order: bool = False,
        inner_steps: int = 1,
        max_grad_norm: float = 1.0,
        batched: bool = True,
        inner_params: tuple[str, ...] | None = None,
    ):
        for name, value in (
            ("inner_lr", inner_lr),
            ("outer_lr", outer_lr),
            ("max_grad_norm", max_grad_norm),
        ):
            check_positive(name, value)
        check_int("inner_steps", inner_steps, minimum=0)
        self.model = model
        self.inner_lr = float(inner_lr)
        self.outer_lr = float(outer_lr)
        self.first_order = bool(first_order)
        self.inner_steps = inner_steps
        self.max_grad_norm = float(max_grad_norm)
        self.batched = bool(batched)
        names = [name for name, _ in model.named_parameters()]
        self.adapted = (
            set(names)
            if inner_params is None
            else {n for n in names if n.startswith(tuple(inner_params))}
        )
        if not self.adapted:
            raise ValueError(
                f"inner_params {inner_params!r} match none of the model's weights "
                f"({', '.join(names)})"
            )
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.outer_lr)
        self.updates = 0  # outer updates applied
        self.skipped_updates = 0  # outer updates refused by the non-finite guard

    def params(self) -> Params:
        """The current initialisation `theta` as a dict of the model's parameters."""
        return dict(self.model.named_parameters())

    def inner_update(
        self, loss_fn: LossFn, params: Params, batch: Any, lr: float | None = None
    ) -> Params:
        """One inner step `theta' = theta - alpha * grad L(theta; batch)` for ONE task.

        Second order keeps the graph of the gradient, so the outer gradient flows
        through it; first order computes the gradient at detached weights, so
        `d theta'/d theta` is the identity.
        """
        lr = self.inner_lr if lr is None else lr
        at = {k: v.detach() for k, v in params.items()} if self.first_order else params
        grads = grad(loss_fn)(at, batch)
        return {
            k: params[k] - lr * grads[k] if k in self.adapted else params[k]
            for k in params
        }

    def adapt(
        self,
        loss_fn: LossFn,
        support: Any,
        steps: int | None = None,
        params: Params | None = None,
        lr: float | None = None,
    ) -> Params:
        """Adapted weights for every task at once: each tensor gets a leading task
        dimension.

        `support` is a pytree whose tensors all have the task dimension first. The start
        is `params`: shared weights (no task dimension), or per-task weights (with one),
        or, by default, the model's current weights, in which case the result stays
        differentiable with respect to them (that is what the outer step needs).
        """
        steps = self.inner_steps if steps is None else steps
        params = self.params() if params is None else params
        n = num_tasks(support)
        reference = dict(self.model.named_parameters())
        per_task = all(v.dim() == reference[k].dim() + 1 for k, v in params.items())
        start = params if per_task else expand_params(params, n)
        if steps == 0:
            return start
        if isinstance(loss_fn, TaskBatchedLoss):
            if self.batched:
                return self._adapt_task_batched(loss_fn, start, support, steps, lr)
            return concat_params(
                [
                    self._adapt_task_batched(loss_fn, p, task, steps, lr)
                    for p, task in zip(
                        split_tasks(start, keep_dim=True),
                        split_tasks(support, keep_dim=True),
                    )
                ]
            )

        def one_task(p, batch):
            for _ in range(steps):
                p = self.inner_update(loss_fn, p, batch, lr)
            return p

        if self.batched:
            if per_task:
                return vmap(one_task)(start, support)
            return vmap(one_task, in_dims=(None, 0))(params, support)
        return stack_params(
            [
                one_task(params if not per_task else p, task)
                for p, task in zip(split_tasks(start), split_tasks(support))
            ]
        )

    def _adapt_task_batched(
        self,
        loss_fn: LossFn,
        params: Params,
        support: Any,
        steps: int,
        lr: float | None,
    ) -> Params:
        """Inner steps for all tasks at once with a task-batched loss.

        Task i's loss depends only on weights i, so the gradient of the *sum* of the
        task losses with respect to weights i is exactly task i's own gradient.
        """
        lr = self.inner_lr if lr is None else lr
        for _ in range(steps):
            at = (
                {k: v.detach().requires_grad_() for k, v in params.items()}
                if self.first_order
                else params
            )
            losses = loss_fn(at, support)
            grads = torch.autograd.grad(
                losses.sum(), list(at.values()), create_graph=not self.first_order
            )
            params = {
                k: v - lr * g if k in self.adapted else v
                for (k, v), g in zip(params.items(), grads)
            }
        return params

    def task_losses(self, loss_fn: LossFn, adapted: Params, data: Any) -> torch.Tensor:
        """`loss_fn` of each task's adapted weights on that task's data: a (n_tasks,)
        tensor."""
        if isinstance(loss_fn, TaskBatchedLoss):
            if self.batched:
                return loss_fn(adapted, data)
            return torch.cat(
                [
                    loss_fn(p, d)
                    for p, d in zip(
                        split_tasks(adapted, keep_dim=True),
                        split_tasks(data, keep_dim=True),
                    )
                ]
            )
        if self.batched:
            return vmap(loss_fn)(adapted, data)
        per_task = split_tasks(adapted)
        return torch.stack([loss_fn(p, d) for p, d in zip(per_task, split_tasks(data))])

    def meta_loss(
        self,
        loss_fn: LossFn,
        support: Any,
        query: Any,
        query_loss_fn: LossFn | None = None,
    ) -> torch.Tensor:
        """Mean over tasks of the query loss after adapting on the support set
        (differentiable in theta)."""
        adapted = self.adapt(loss_fn, support)
        return self.task_losses(query_loss_fn or loss_fn, adapted, query).mean()

    def step(self, meta_loss: torch.Tensor) -> MetaStep:
        """Backpropagate `meta_loss` into theta, clip, and take one Adam step.

        The non-finite guard skips (and counts in `skipped_updates`) any update whose
        loss or gradient norm is NaN or infinite, so one bad batch cannot poison the
        weights.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss = float(meta_loss.detach())
        if not math.isfinite(loss):
            self.skipped_updates += 1
            log.warning(
                "meta-loss is %s: update skipped (%d so far)",
                loss,
                self.skipped_updates,
            )
            return MetaStep(loss, float("nan"), False)
        meta_loss.backward()
        norm = float(
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        )
        if not math.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            log.warning(
                "meta-gradient norm is %s: update skipped (%d so far)",
                norm,
                self.skipped_updates,
            )
            return MetaStep(loss, norm, False)
        self.optimizer.step()
        self.updates += 1
        return MetaStep(loss, norm, True)

    def state_dict(self) -> dict:
        """The optimiser state and counters, for resuming (the weights live in the
        model)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])

"""Per-task weights and task batches: the leading task dimension MAML works over
(chapter 3).

MAML adapts one copy of the weights per task. Here a copy is a dict of tensors whose
first dimension indexes the task, `(n_tasks, *param.shape)`, and a task batch is any
pytree of tensors with the same first dimension. This module builds and splits such
weights and batches, runs a stateful model with given weights (`unroll`), and names the
second form a MAML loss can take, `TaskBatchedLoss`. `ssm_metarl.meta.maml.MetaMAML`
uses all of it. Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call

__all__ = [
    "TaskBatchedLoss",
    "unroll",
    "stack_params",
    "expand_params",
    "concat_params",
    "num_tasks",
    "split_tasks",
]

Params = dict[str, torch.Tensor]
#: `loss_fn(params, batch) -> scalar` for ONE task; `batch` is any pytree of tensors.
LossFn = Callable[[Params, Any], torch.Tensor]


@dataclass(frozen=True)
class TaskBatchedLoss:
    """A MAML loss that takes weights and data with a leading task dimension and returns
    the (n_tasks,) losses, task i's loss depending only on weights i. `one_task`
    optionally holds the same loss for ONE task (no task dimension), which `MetaMAML`
    can map with `vmap`. Defined in chapter 3 (`03_maml`).
    """

    fn: Callable[[Params, Any], torch.Tensor]
    one_task: LossFn | None = None

    def __call__(self, params: Params, batch: Any) -> torch.Tensor:
        return self.fn(params, batch)


def unroll(
    model: nn.Module,
    params: Params,
    xs: torch.Tensor,
    hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """Outputs (B, T, out) of a stateful model run over `xs` (B, T, in) with weights
    `params`.

    The model needs `init_hidden(batch_size)` and `forward(x, h) -> (y, h_next)`. Each
    step is a `functional_call`, so the outputs are differentiable with respect to
    `params` (also under `vmap` and `grad`): backpropagation through time for any
    recurrent module. Defined in chapter 3 (`03_maml`).
    """
    if hidden is None:
        hidden = model.init_hidden(xs.shape[0]).to(xs.dtype)
    outputs = []
    for x in xs.unbind(dim=1):
        y, hidden = functional_call(model, params, (x, hidden))
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def stack_params(per_task: list[Params]) -> Params:
    """Stack a list of per-task weight dicts into one dict with a leading task dimension
    (chapter 3)."""
    return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}


def expand_params(params: Params, n: int) -> Params:
    """Shared weights as per-task weights: a leading task dimension of size n (a view,
    no copy; chapter 3)."""
    return {k: v.expand(n, *v.shape) for k, v in params.items()}


def concat_params(per_task: list[Params]) -> Params:
    """Join per-task weight dicts that each keep a task dimension (of size 1, say) along
    it (chapter 3)."""
    return {k: torch.cat([p[k] for p in per_task]) for k in per_task[0]}


def num_tasks(tree: Any) -> int:
    """The leading task dimension shared by every tensor of a task batch (chapter 3).

    Raises ValueError naming the sizes when the tensors disagree.
    """
    sizes = {leaf.shape[0] for leaf in torch.utils._pytree.tree_leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(
            "every tensor of a task batch needs the same leading task dimension, got "
            f"sizes {sorted(sizes)}"
        )
    return sizes.pop()


def split_tasks(tree: Any, keep_dim: bool = False) -> list[Any]:
    """Split a task batch into one pytree per task (chapter 3); `keep_dim` gives slices
    of size 1 instead of indices, so each piece is still a task batch."""
    leaves, spec = torch.utils._pytree.tree_flatten(tree)
    n = num_tasks(tree)
    take = (lambda leaf, i: leaf[i : i + 1]) if keep_dim else (lambda leaf, i: leaf[i])
    return [
        torch.utils._pytree.tree_unflatten([take(leaf, i) for leaf in leaves], spec)
        for i in range(n)
    ]

"""Sine-wave regression: the few-shot benchmark of Finn et al. 2017 (Sec. 5.1, Fig. 2).

A task is a sine ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]`` and phase
``phi ~ U[0, pi]``; ``x ~ U[-5, 5]``. The learner sees K=10 points of a new sine and
must fit the whole curve. The model is the paper's MLP (1-40-40-1, ReLU). Taught in
chapter 3 (``book/03_maml.md``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..io.validation import check_choice, check_int, check_positive
from ..report.progress import progress_bar
from .maml import METHODS, MetaMAML
from .per_task import Params, expand_params

__all__ = [
    "SineConfig",
    "SineTasks",
    "sine_model",
    "mse_loss",
    "train_sine",
    "sine_errors",
    "SINE_METHODS",
    "SINE_TEST_SEED",
    "load_sine_model",
]

#: Seed of the held-out sines that model cards and chapter 3 evaluate on (training uses
#: ``config.seed``). (CartPole's held-out episodes use
#: :data:`ssm_metarl.meta.evaluation.TEST_SEED`; this is the sines' own.)
SINE_TEST_SEED = 12_345
#: Ways to learn an initialisation for sine regression:
#: :data:`ssm_metarl.meta.maml.METHODS`.
SINE_METHODS = tuple(m for m in METHODS if m != "anil")


@dataclass(frozen=True)
class SineConfig:
    """Hyperparameters of sine-regression meta-training (chapter 3).

    The defaults follow Finn et al. 2017."""

    # K: points seen per task, for the support and again for the query set
    k_shot: int = 10
    hidden_dim: int = 40  # width of the two hidden layers
    meta_batch: int = 25  # tasks per outer update
    inner_lr: float = 0.01  # alpha
    outer_lr: float = 0.001  # Adam's beta
    inner_steps: int = 1  # inner steps during meta-training
    iterations: int = 10_000  # outer updates (the paper ran 70,000)
    max_grad_norm: float = 10.0  # outer-gradient clipping
    seed: int = 0

    def __post_init__(self):
        for name in ("k_shot", "hidden_dim", "meta_batch", "iterations", "inner_steps"):
            check_int(name, getattr(self, name))
        for name in ("inner_lr", "outer_lr", "max_grad_norm"):
            check_positive(name, getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)


class SineTasks:
    """A seeded stream of sine tasks. Different seeds give disjoint held-out sets in
    practice (the parameters are continuous), and the same seed always gives the same
    tasks. Defined in chapter 3."""

    amplitude = (0.1, 5.0)
    phase = (0.0, math.pi)
    x_range = (-5.0, 5.0)

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=self.generator)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` tasks: amplitudes and phases, each of shape (n,)."""
        return self._uniform(*self.amplitude, n), self._uniform(*self.phase, n)

    def points(
        self, amplitude: torch.Tensor, phase: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` random points of each task: x and y of shape (n, k, 1)."""
        x = self._uniform(*self.x_range, amplitude.shape[0], k, 1)
        return x, amplitude[:, None, None] * torch.sin(x - phase[:, None, None])


def sine_model(hidden_dim: int = 40, seed: int = 0) -> nn.Sequential:
    """The paper's regressor: 1 -> hidden -> hidden -> 1 with ReLUs, seeded initial
    weights. Defined in chapter 3."""
    # seeded weights without touching the caller's global RNG
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(1, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )


def load_sine_model(path) -> nn.Sequential:
    """A sine regressor saved by ``python -m ssm_metarl train --family sine`` (a checked
    checkpoint). Chapter 3."""
    from ..io.checkpoint import WrongCheckpointError, check_weights, load_checkpoint

    ckpt = load_checkpoint(path, kind="SineRegressor")
    hidden = ckpt.config.get("hidden_dim")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise WrongCheckpointError(
            f"{path}: config hidden_dim must be a positive int, got {hidden!r}"
        )
    model = sine_model(hidden)
    check_weights(ckpt.state_dict, model.state_dict(), source=str(path))
    model.load_state_dict(ckpt.state_dict)
    return model


def mse_loss(model: nn.Module):
    """``loss_fn(params, (x, y))`` for :class:`~ssm_metarl.meta.maml.MetaMAML`: the mean
    squared error of one task (chapter 3)."""

    def loss_fn(params: Params, batch) -> torch.Tensor:
        x, y = batch
        return ((torch.func.functional_call(model, params, (x,)) - y) ** 2).mean()

    return loss_fn


def train_sine(
    method: str = "maml", config: SineConfig = SineConfig(), progress: bool = True
):
    """Learn an initialisation for sine regression; returns
    ``(model, losses, seconds)``.

    ``"maml"`` and ``"fomaml"`` meta-train with second- and first-order MAML;
    ``"multitask"`` is the paper's "pretrained" baseline: one regressor trained on
    points of all tasks at once (the same 2K points per task per iteration), which
    learns the average sine, 0. Defined in chapter 3 (``03_maml``).
    """
    check_choice("sine method", method, SINE_METHODS)
    model = sine_model(config.hidden_dim, config.seed)
    loss_fn = mse_loss(model)
    tasks = SineTasks(config.seed)
    maml = MetaMAML(
        model,
        config.inner_lr,
        config.outer_lr,
        first_order=(method == "fomaml"),
        inner_steps=config.inner_steps,
        max_grad_norm=config.max_grad_norm,
    )
    losses = []
    start = time.perf_counter()
    for _ in progress_bar(
        range(config.iterations), enabled=progress, desc=f"sine {method}"
    ):
        amplitude, phase = tasks.sample(config.meta_batch)
        x, y = tasks.points(amplitude, phase, 2 * config.k_shot)
        support = (x[:, : config.k_shot], y[:, : config.k_shot])
        query = (x[:, config.k_shot :], y[:, config.k_shot :])
        if method == "multitask":
            loss = loss_fn(maml.params(), (x, y))
        else:
            loss = maml.meta_loss(loss_fn, support, query)
        losses.append(maml.step(loss).loss)
    return model, losses, time.perf_counter() - start


def sine_errors(
    model: nn.Module,
    amplitude: torch.Tensor,
    phase: torch.Tensor,
    steps=(0, 1, 10),
    k_shot: int = 10,
    inner_lr: float = 0.01,
    seed: int = 1,
    grid_points: int = 100,
):
    """Per-task mean squared error on a dense grid of x after each number of inner
    steps.

    Each task gets ``k_shot`` support points (drawn from ``seed``), then plain gradient
    steps of size ``inner_lr`` from ``model``'s weights. Returns ``(errors, curves)``:
    ``errors[s]`` is a (n_tasks,) tensor, ``curves[s]`` the predictions (n_tasks, grid)
    on ``grid = linspace(-5, 5)``, so a figure can show the fitted curves. Defined in
    chapter 3 (``03_maml``).
    """
    loss_fn = mse_loss(model)
    maml = MetaMAML(model, inner_lr=inner_lr)
    x, y = SineTasks(seed).points(amplitude, phase, k_shot)
    grid = torch.linspace(*SineTasks.x_range, grid_points)
    xs = grid.expand(amplitude.shape[0], grid_points)[..., None]
    truth = amplitude[:, None, None] * torch.sin(xs - phase[:, None, None])
    params = {k: v.detach() for k, v in maml.params().items()}
    errors, curves, done = {}, {}, 0
    adapted = expand_params(params, amplitude.shape[0])
    for s in sorted(steps):
        if s > done:
            adapted = torch.func.vmap(
                lambda p, b, n=s - done: _steps(maml, loss_fn, p, b, n)
            )(adapted, (x, y))
            done = s
        pred = torch.func.vmap(
            lambda p, xx: torch.func.functional_call(model, p, (xx,))
        )(adapted, xs)
        errors[s] = ((pred - truth) ** 2).mean(dim=(1, 2)).detach()
        curves[s] = pred[..., 0].detach()
    return errors, curves


def _steps(maml: MetaMAML, loss_fn, params: Params, batch, n: int) -> Params:
    for _ in range(n):
        params = maml.inner_update(loss_fn, params, batch)
    return params

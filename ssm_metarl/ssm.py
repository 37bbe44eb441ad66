"""State space models: the model card's neural SSM and a linear diagonal SSM layer.

Taught in chapter 1 (``book/01_state_space_models.md``).
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["SSMConfig", "StateSpaceModel"]


@dataclass(frozen=True)
class SSMConfig:
    """Sizes of :class:`StateSpaceModel`; the model card uses (32, 4, 4, 64)."""

    state_dim: int = 32  # size of the recurrent state h
    input_dim: int = 4  # size of one input x_t (CartPole's observation)
    output_dim: int = 4  # size of one output y_t; a policy reads its first logits from it
    hidden_dim: int = 64  # width of the MLPs f (transition) and C (readout)
    bounded: bool = True  # squash the state with tanh so it cannot blow up (chapter 1)

    def __post_init__(self):
        for name in ("state_dim", "input_dim", "output_dim", "hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


class _class_or_instance_method:
    """Bind a method to the instance when called on one, to the class otherwise."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        return functools.partial(self.func, cls if obj is None else obj)


class StateSpaceModel(nn.Module):
    r"""The model card's neural state space model.

    .. math::
        h_t = \tanh\big(f(h_{t-1}) + B x_t\big), \qquad y_t = C(h_t) + D x_t

    ``f`` (state→hidden→state) and ``C`` (state→hidden→output) are two-layer ReLU MLPs,
    ``B`` and ``D`` are affine maps. It is a nonlinear recurrent network in state-space
    form, not an LSTM. The ``tanh`` bounds the state in (-1, 1): without it, trained
    policies drove ``|h|`` past 1e22 and then to NaN (``bounded=False`` restores that
    behaviour for chapter 1's demonstration). The bound adds no parameters: the card's
    configuration has exactly 6,744.

    Defined in chapter 1 (``01_state_space_models``).
    """

    def __init__(self, state_dim: int = 32, input_dim: int = 4, output_dim: int = 4,
                 hidden_dim: int = 64, bounded: bool = True):
        super().__init__()
        self.config = SSMConfig(state_dim, input_dim, output_dim, hidden_dim, bounded)
        self.state_dim, self.input_dim, self.output_dim, self.hidden_dim = state_dim, input_dim, output_dim, hidden_dim
        self.transition = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, state_dim))
        self.input_map = nn.Linear(input_dim, state_dim)
        self.readout = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim))
        self.feedthrough = nn.Linear(input_dim, output_dim)

    def init_hidden(self, batch_size: int = 1) -> torch.Tensor:
        """The initial state: zeros of shape (batch_size, state_dim)."""
        return torch.zeros(batch_size, self.state_dim, device=self.input_map.weight.device)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x`` (B, input_dim), ``hidden`` (B, state_dim) → (output (B, output_dim), next hidden)."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x must have shape (B, {self.input_dim}), got {tuple(x.shape)}")
        if hidden.dim() != 2 or hidden.shape != (x.shape[0], self.state_dim):
            raise ValueError(f"hidden must have shape ({x.shape[0]}, {self.state_dim}), got {tuple(hidden.shape)}")
        pre = self.transition(hidden) + self.input_map(x)
        next_hidden = torch.tanh(pre) if self.config.bounded else pre
        return self.readout(next_hidden) + self.feedthrough(x), next_hidden

    def forward_sequence(self, xs: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a whole sequence ``xs`` (B, T, input_dim) → (outputs (B, T, output_dim), final hidden)."""
        if xs.dim() != 3 or xs.shape[-1] != self.input_dim:
            raise ValueError(f"xs must have shape (B, T, {self.input_dim}), got {tuple(xs.shape)}")
        if hidden is None:
            hidden = self.init_hidden(xs.shape[0])
        outputs = []
        for t in range(xs.shape[1]):
            y, hidden = self(xs[:, t], hidden)
            outputs.append(y)
        return torch.stack(outputs, dim=1), hidden

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Save weights and config atomically (see :mod:`ssm_metarl.checkpoint`)."""
        return save_checkpoint(path, kind=type(self).__name__, config=asdict(self.config),
                               state_dict=self.state_dict(), extra=extra)

    @_class_or_instance_method
    def load(self_or_cls, path: str | os.PathLike) -> "StateSpaceModel":
        """Load a checkpoint.

        ``StateSpaceModel.load(path)`` builds and returns a new model from the saved config.
        ``model.load(path)`` (the model card's form) loads in place after checking that the
        saved config matches this model's, and returns the model.
        """
        if isinstance(self_or_cls, type):
            ckpt = load_checkpoint(path, kind=self_or_cls.__name__)
            try:
                config = SSMConfig(**ckpt.config)
            except TypeError as exc:
                raise CheckpointError(f"{path}: checkpoint config does not fit SSMConfig ({exc})") from None
            model = self_or_cls(**asdict(config))
        else:
            model = self_or_cls
            ckpt = load_checkpoint(path, kind=type(model).__name__, expected_config=asdict(model.config))
        try:
            model.load_state_dict(ckpt.state_dict)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{path}: weights do not fit the model ({first})") from None
        return model

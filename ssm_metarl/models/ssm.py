"""The model card's neural state space model, `StateSpaceModel`: its equations, written
once.

Every other module runs the model through `StateSpaceModel.outputs` and
`StateSpaceModel.step`, which also take functional weights with a leading task
dimension (batched matmuls); none of them knows its layer names.
Taught in chapter 1 (`book/01_state_space_models.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..io.validation import check_bool, check_int, check_model_input
from .checkpointed import Checkpointed

__all__ = ["SSMConfig", "StateSpaceModel", "Params", "balancing_ssm", "OUTPUT_HEAD"]

#: The weights that write the output: the readout's last layer and the feedthrough.
#: ANIL's inner loop adapts only these (chapter 3).
OUTPUT_HEAD = ("readout.2.", "feedthrough.")

#: Functional weights: parameter name -> tensor, optionally with a leading task
#: dimension.
Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SSMConfig:
    """Sizes of `StateSpaceModel`; the model card uses (32, 4, 4, 64). Defined in
    chapter 1."""

    state_dim: int = 32  # size of the recurrent state h
    input_dim: int = 4  # size of one input x_t (CartPole's observation)
    # size of one output y_t; a policy reads its first logits from it
    output_dim: int = 4
    hidden_dim: int = 64  # width of the MLPs f (transition) and C (readout)
    bounded: bool = True  # squash the state with tanh so it cannot blow up (chapter 1)

    def __post_init__(self):
        for name in ("state_dim", "input_dim", "output_dim", "hidden_dim"):
            check_int(name, getattr(self, name))
        check_bool("bounded", self.bounded)


class StateSpaceModel(Checkpointed, nn.Module):
    r"""The model card's neural state space model.

    .. math::
        h_t = \tanh\big(f(h_{t-1}) + B x_t\big), \qquad y_t = C(h_t) + D x_t

    `f` (state→hidden→state) and `C` (state→hidden→output) are two-layer ReLU
    MLPs, `B` and `D` are affine maps. It is a nonlinear recurrent network in
    state-space form, not an LSTM. The `tanh` bounds the state in (-1, 1): without
    it, trained policies drove `|h|` past 1e22 and then to NaN (`bounded=False`
    restores that behaviour for chapter 1's demonstration). The bound adds no
    parameters: the card's configuration has exactly 6,744.

    The equations live in `_transition` and `_readout` only. `step` runs one time step,
    `outputs` a whole sequence (the input terms and the readout batched over time, only
    the transition sequential). Both take optional functional weights `params` (a dict
    like `named_parameters()`); weights with a leading task dimension n run every task's
    weights on its own inputs (n, B, ...) as batched matmuls (MAML, chapter 3).

    It saves and loads as one checkpoint with its config (`save`, `load`, from
    `Checkpointed`). Defined in chapter 1 (`01_state_space_models`).
    """

    config_class = SSMConfig  # what `load` rebuilds the model from

    def __init__(
        self,
        state_dim: int = 32,
        input_dim: int = 4,
        output_dim: int = 4,
        hidden_dim: int = 64,
        bounded: bool = True,
    ):
        super().__init__()
        self.config = SSMConfig(state_dim, input_dim, output_dim, hidden_dim, bounded)
        self.state_dim, self.input_dim, self.output_dim, self.hidden_dim = (
            state_dim,
            input_dim,
            output_dim,
            hidden_dim,
        )
        self.transition = nn.Sequential(
            nn.Linear(state_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, state_dim),
        )
        self.input_map = nn.Linear(input_dim, state_dim)
        self.readout = nn.Sequential(
            nn.Linear(state_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )
        self.feedthrough = nn.Linear(input_dim, output_dim)

    def init_hidden(self, batch_size: int = 1) -> torch.Tensor:
        """The initial state: zeros of shape (batch_size, state_dim), on the weights'
        device and dtype."""
        batch_size = check_int("batch_size", batch_size)
        weight = self.input_map.weight
        return torch.zeros(
            batch_size, self.state_dim, device=weight.device, dtype=weight.dtype
        )

    # -- the equations, once
    # ----------------------------------------------------------------
    def _weights(self, params: Params | None) -> tuple[Params, bool]:
        """The weights to use and whether they carry a leading task dimension."""
        if params is None:
            return dict(self.named_parameters()), False
        weight = params["input_map.weight"]
        return params, weight.dim() == self.input_map.weight.dim() + 1

    @staticmethod
    def _linear(p: Params, name: str, x: torch.Tensor, per_task: bool) -> torch.Tensor:
        """`x W^T + b`; with per-task weights W (n, out, in) and x (n, ..., in), a
        batched matmul."""
        if per_task:
            return torch.matmul(x, p[name + ".weight"].transpose(-1, -2)) + p[
                name + ".bias"
            ].unsqueeze(-2)
        return F.linear(x, p[name + ".weight"], p[name + ".bias"])

    def _transition(
        self, p: Params, hidden: torch.Tensor, drive: torch.Tensor, per_task: bool
    ) -> torch.Tensor:
        """h_t = tanh(f(h_{t-1}) + B x_t), with the drive B x_t given."""
        f = self._linear(
            p,
            "transition.2",
            torch.relu(self._linear(p, "transition.0", hidden, per_task)),
            per_task,
        )
        pre = f + drive
        return torch.tanh(pre) if self.config.bounded else pre

    def _readout(
        self, p: Params, hidden: torch.Tensor, x: torch.Tensor, per_task: bool
    ) -> torch.Tensor:
        """y_t = C(h_t) + D x_t."""
        c = self._linear(
            p,
            "readout.2",
            torch.relu(self._linear(p, "readout.0", hidden, per_task)),
            per_task,
        )
        return c + self._linear(p, "feedthrough", x, per_task)

    # -- the functional path
    # -----------------------------------------------------------------
    def step(
        self, x: torch.Tensor, hidden: torch.Tensor, params: Params | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: `x` (..., input_dim), `hidden` (..., state_dim) → (output, next
        hidden).

        With per-task `params` (leading dim n), `x` is (n, B, input_dim) and `hidden`
        (n, B, state_dim). Defined in chapter 1 (`01_state_space_models`); chapter 3
        uses the per-task form.
        """
        p, per_task = self._weights(params)
        hidden = self._transition(
            p, hidden, self._linear(p, "input_map", x, per_task), per_task
        )
        return self._readout(p, hidden, x, per_task), hidden

    def outputs(
        self,
        inputs: torch.Tensor,
        params: Params | None = None,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole sequence: `inputs` (B, T, input_dim) → (outputs (B, T, output_dim),
        final hidden).

        With per-task `params` (leading dim n), `inputs` is (n, B, T, input_dim) and the
        outputs (n, B, T, output_dim). `hidden` defaults to zeros. Only the transition
        runs step by step; the drive `B x_t`, the readout `C(h_t)` and `D x_t` run once
        over all T steps. Defined in chapter 1 (`01_state_space_models`); chapters 2-3
        use it for teacher forcing and MAML.
        """
        p, per_task = self._weights(params)
        check_model_input(
            "inputs", inputs, p["input_map.weight"], f"(..., B, T, {self.input_dim})"
        )
        if hidden is not None:
            check_model_input(
                "hidden", hidden, p["input_map.weight"], f"(..., B, {self.state_dim})"
            )
        if (
            inputs.shape[-1] != self.input_dim
            or inputs.dim() < 3
            or inputs.shape[-2] == 0
        ):
            raise ValueError(
                f"inputs must have shape (..., B, T, {self.input_dim}) with T >= 1, "
                f"got {tuple(inputs.shape)}"
            )
        lead, steps = inputs.shape[:-2], inputs.shape[-2]
        # (n, B*T, in): one matmul per task
        flat = inputs.reshape(lead[0], -1, self.input_dim) if per_task else inputs
        drive = self._linear(p, "input_map", flat, per_task).reshape(
            *lead, steps, self.state_dim
        )
        if hidden is None:
            hidden = inputs.new_zeros(*lead, self.state_dim)
        states = []
        # unbind, not drive[..., t, :]: indexing in a loop makes backward O(T^2)
        for d in drive.unbind(dim=-2):
            hidden = self._transition(p, hidden, d, per_task)
            states.append(hidden)
        states = torch.stack(states, dim=-2)
        if per_task:
            states = states.reshape(lead[0], -1, self.state_dim)
        return self._readout(p, states, flat, per_task).reshape(
            *lead, steps, self.output_dim
        ), hidden

    # -- the module interface (nn.Module call, the card's forward_sequence)
    # ------------------
    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: `x` (B, input_dim), `hidden` (B, state_dim) → (output (B,
        output_dim), next hidden).

        Unlike `step` (the unchecked fast path of rollouts), it checks its inputs: a
        non-tensor, another dtype than the weights' or an empty batch is a one-line
        error.
        """
        check_model_input("x", x, self.input_map.weight, f"(B, {self.input_dim})")
        check_model_input(
            "hidden", hidden, self.input_map.weight, f"(B, {self.state_dim})"
        )
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"x must have shape (B, {self.input_dim}), got {tuple(x.shape)}"
            )
        if hidden.dim() != 2 or hidden.shape != (x.shape[0], self.state_dim):
            raise ValueError(
                f"hidden must have shape ({x.shape[0]}, {self.state_dim}), got "
                f"{tuple(hidden.shape)}"
            )
        return self.step(x, hidden)

    def forward_sequence(
        self, xs: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a whole sequence `xs` (B, T, input_dim) → (outputs (B, T, output_dim),
        final hidden): `outputs`."""
        check_model_input("xs", xs, self.input_map.weight, f"(B, T, {self.input_dim})")
        if xs.dim() != 3 or xs.shape[-1] != self.input_dim:
            raise ValueError(
                f"xs must have shape (B, T, {self.input_dim}), got {tuple(xs.shape)}"
            )
        if xs.shape[1] == 0:
            raise ValueError("xs must have at least one time step (T >= 1), got T=0")
        return self.outputs(xs, hidden=hidden)

    def widened(
        self, state_dim: int | None = None, hidden_dim: int | None = None, seed: int = 0
    ) -> "StateSpaceModel":
        """A copy with a larger state and/or wider MLPs that computes exactly the same
        outputs at first.

        Old weights are copied into the top-left blocks. The new units start from seeded
        random weights, but what they send to the old units and to the output is zero:
        new state components are not read by `f` or `C`, and new hidden units feed
        nothing. So the outputs are unchanged until training moves those zeros (their
        gradients are not zero). Sizes may only grow. Defined in chapter 5
        (`05_recursive_self_improvement`).
        """
        state_dim, hidden_dim = (
            state_dim or self.state_dim,
            hidden_dim or self.hidden_dim,
        )
        if state_dim < self.state_dim or hidden_dim < self.hidden_dim:
            raise ValueError(
                f"widened() only grows the model: ({self.state_dim}, "
                f"{self.hidden_dim}) -> "
                f"({state_dim}, {hidden_dim}); a smaller model cannot compute the same "
                "function"
            )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            wide = type(self)(
                state_dim,
                self.input_dim,
                self.output_dim,
                hidden_dim,
                self.config.bounded,
            )
        wide = wide.to(
            dtype=self.input_map.weight.dtype, device=self.input_map.weight.device
        )
        s, h = self.state_dim, self.hidden_dim
        # old hidden units ignore new state
        zero = {
            "transition.0.weight": (slice(None, h), slice(s, None)),
            # new hidden units feed no old state
            "transition.2.weight": (slice(None, s), slice(h, None)),
            "readout.0.weight": (slice(None, h), slice(s, None)),
            # new readout units feed no output
            "readout.2.weight": (slice(None), slice(h, None)),
        }
        with torch.no_grad():
            new = dict(wide.named_parameters())
            for name, old in self.named_parameters():
                new[name][tuple(slice(0, n) for n in old.shape)] = old
                if name in zero:
                    new[name][zero[name]] = 0.0
        return wide


def balancing_ssm(rule=(0.0, 0.0, 100.0, 50.0), seed: int = 0) -> StateSpaceModel:
    """The card's SSM (32, 4, 4, 64) set to balance: its feedthrough `D` gives
    logit(right) - logit(left) = `rule` · obs (by default a = [θ + 0.5 θ̇ > 0]) and
    its readout is zeroed. Its forward costs what any weights cost, and its episodes run
    long, like a trained policy's: the model for timing rollouts. Seeded weights
    elsewhere. Defined in chapter 2 (`02_cartpole_tasks`).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = StateSpaceModel(32, 4, 4, 64)
    with torch.no_grad():
        for layer in (model.readout[2], model.feedthrough):
            layer.weight.zero_(), layer.bias.zero_()
        model.feedthrough.weight[1] = torch.tensor(rule, dtype=torch.float32)
    return model

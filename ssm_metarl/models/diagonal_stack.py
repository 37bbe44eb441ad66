"""Chapter 7's diagonal linear SSM stack (S5 / LRU style): a memory that trains over
whole meta-episodes with one parallel scan and acts one step at a time.

Why a linear recurrence: its states over all T steps come out of one log-depth scan
(`scan_with_resets`, which also restarts the state at episode boundaries), so training
on 3,200-step meta-episodes needs no 3,200-step loop; acting runs the same recurrence
step by step. Each layer keeps chapter 1's parameterisation (`s4d.DiagonalSSM`:
Re A = -exp(.), an imaginary part, a learned log step, zero-order hold through
`discretize`) but is multi-input multi-output as in S5 (Smith et al. 2023): one complex
state of size P shared by the H channels, an input matrix B (P x H) and an output
matrix C (H x P) read through its real part. A GELU, a residual connection and a layer
norm around each layer make the stack nonlinear. Taught in chapter 7 ("which memory?").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..io.validation import check_int, check_positive
from .linear_recurrence import (
    discretize,
    real_part_of_product,
    real_times_complex,
    scan_with_resets,
)

__all__ = ["DiagonalStackLayer", "DiagonalSSMStack"]


class DiagonalStackLayer(nn.Module):
    r"""One S5-style layer of chapter 7's diagonal SSM stack, width H, complex state P.

    .. math::
        v_t = \mathrm{LN}(u_t), \quad x_t = \bar\Lambda x_{t-1} + \bar B v_t, \quad
        y_t = u_t + \mathrm{GELU}\big(\mathrm{Re}(C x_t) + D \odot v_t\big)

    with diagonal $\Lambda = -e^{a} + i\omega$ and $(\bar\Lambda, \bar B)$ from
    `discretize` (zero-order hold) with a learned step per state. The norm sits before
    the SSM (pre-norm), so the residual path carries $u$ unchanged and stacked layers
    start close to the identity. Initialisation: chapter 1's S4D-Lin eigenvalues
    $-1/2 + i\pi n$ and log-uniform steps in [dt_min, dt_max]; B and C complex normal
    with variance 1/H and 1/P; D standard normal. `run` (a whole sequence, one scan) and
    `step` (one step) compute the same thing. Defined in chapter 7.
    """

    def __init__(
        self,
        width: int,
        state_dim: int,
        generator: torch.Generator,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        H, P, g = width, state_dim, generator
        self.width, self.state_dim = H, P
        log_dt = torch.rand(P, generator=g) * (
            math.log(dt_max) - math.log(dt_min)
        ) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_neg_real_A = nn.Parameter(torch.full((P,), math.log(0.5)))
        self.imag_A = nn.Parameter(math.pi * torch.arange(P, dtype=torch.float32))
        # complex numbers are stored as (real, imag) pairs in a last dim of 2, as in
        # chapter 1; each part has half the variance
        self.B = nn.Parameter(torch.randn(P, H, 2, generator=g) * math.sqrt(0.5 / H))
        self.C = nn.Parameter(torch.randn(H, P, 2, generator=g) * math.sqrt(0.5 / P))
        self.D = nn.Parameter(torch.randn(H, generator=g))
        self.norm = nn.LayerNorm(H)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The discrete `(Lambda_bar (P,), B_bar (P, H), C (H, P))`, all complex
        (chapter 7)."""
        A = torch.complex(-torch.exp(self.log_neg_real_A), self.imag_A)[:, None]
        A_bar, B_bar = discretize(
            A, torch.view_as_complex(self.B), torch.exp(self.log_dt)[:, None], "zoh"
        )
        return A_bar[:, 0], B_bar, torch.view_as_complex(self.C)

    def run(
        self,
        u: torch.Tensor,
        state: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole sequence `u` (B, T, H) from `state` (B, P) complex (zeros if None),
        the state restarting from zeros where `resets` (B, T) is True: (outputs
        (B, T, H), last state (B, P)). One `scan_with_resets` (chapter 7)."""
        A_bar, B_bar, C = self.discrete()
        v = self.norm(u)
        b = real_times_complex(v, B_bar.mT)  # (B, T, P)
        if resets is None:
            resets = torch.zeros(u.shape[:2], dtype=torch.bool, device=u.device)
        if state is not None:
            # the scan starts from x_{-1} = 0; a carried state enters through b_0
            carried = A_bar * state * (~resets[:, :1]).to(state.real.dtype)
            b = torch.cat([b[:, :1] + carried[:, None], b[:, 1:]], dim=1)
        x = scan_with_resets(A_bar, b, resets)
        y = real_part_of_product(x, C.mT) + self.D * v
        return u + F.gelu(y), x[:, -1]

    def step(
        self, u: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: `u` (B, H), `state` (B, P) complex -> (output (B, H), state),
        the recurrence `run` scans (chapter 7)."""
        A_bar, B_bar, C = self.discrete()
        v = self.norm(u)
        state = A_bar * state + real_times_complex(v, B_bar.mT)
        y = real_part_of_product(state, C.mT) + self.D * v
        return u + F.gelu(y), state


class DiagonalSSMStack(nn.Module):
    """Chapter 7's diagonal SSM memory: `layers` `DiagonalStackLayer`s of width `width`,
    each with a complex state of `state_dim` (default: `width`, as in S5).

    The state a policy carries is one flat float32 tensor (B, `state_size`): every
    layer's complex state as interleaved (real, imaginary) pairs, layer after layer.
    `run(u, state, resets)` processes a whole sequence with one parallel scan per layer,
    restarting from the zero state where `resets` is True; `step(u, state)` is the same
    recurrence for acting. Seeded by `seed`. Defined in chapter 7.
    """

    def __init__(
        self,
        width: int,
        state_dim: int | None = None,
        layers: int = 2,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        seed: int = 0,
    ):
        super().__init__()
        width, layers = check_int("width", width), check_int("layers", layers)
        state_dim = check_int("state_dim", width if state_dim is None else state_dim)
        check_positive("dt_min", dt_min)
        check_positive("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"need dt_min <= dt_max, got {dt_min} > {dt_max}")
        g = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        self.width, self.state_dim, self.n_layers = width, state_dim, layers
        self.layers = nn.ModuleList(
            DiagonalStackLayer(width, state_dim, g, dt_min, dt_max)
            for _ in range(layers)
        )
        self.state_size = 2 * layers * state_dim

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The zero state, (batch_size, state_size) float32 (chapter 7)."""
        weight = self.layers[0].D
        return torch.zeros(
            batch_size, self.state_size, dtype=weight.dtype, device=weight.device
        )

    def _unpack(self, state: torch.Tensor) -> torch.Tensor:
        """(B, state_size) real -> (B, layers, P) complex."""
        pairs = state.reshape(state.shape[0], self.n_layers, self.state_dim, 2)
        return torch.view_as_complex(pairs.contiguous())

    @staticmethod
    def _pack(states: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer (B, P) complex -> (B, state_size) real."""
        return torch.view_as_real(torch.stack(states, dim=1)).flatten(1)

    def run(
        self,
        u: torch.Tensor,
        state: torch.Tensor | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole sequence `u` (B, T, width) -> (outputs (B, T, width), last state);
        `resets` (B, T) bool restarts the state there (chapter 7)."""
        carried = None if state is None else self._unpack(state).unbind(1)
        last = []
        for i, layer in enumerate(self.layers):
            u, x = layer.run(u, None if carried is None else carried[i], resets)
            last.append(x)
        return u, self._pack(last)

    def step(
        self, u: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: `u` (B, width), `state` (B, state_size) -> (output, state)
        (chapter 7)."""
        carried, new = self._unpack(state).unbind(1), []
        for layer, x in zip(self.layers, carried):
            u, x = layer.step(u, x)
            new.append(x)
        return u, self._pack(new)

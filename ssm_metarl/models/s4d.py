"""Chapter 1's diagonal SSM layer (S4D / LRU style), computed three ways: recurrence,
chunked scan and FFT convolution.

It is built from the linear recurrence's tools in `linear_recurrence` (`discretize`,
`parallel_scan`); `s4d_speed` times its modes. Taught in chapter 1
(`book/01_state_space_models.md`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..io.validation import check_choice, check_int, check_positive
from .linear_recurrence import (
    DISCRETIZATIONS,
    as_complex,
    discretize,
    parallel_scan,
    powers_of,
    real_part_of_product,
    real_times_complex,
)

__all__ = ["DiagonalSSMConfig", "DiagonalSSM", "COMPUTE_MODES", "SCAN_CHUNK"]

#: the three ways `DiagonalSSM` computes its output
COMPUTE_MODES = ("recurrence", "scan", "fft")
#: default chunk length of `DiagonalSSM`'s `"scan"` mode (1 = the plain scan)
SCAN_CHUNK = 64


@dataclass(frozen=True)
class DiagonalSSMConfig:
    """Sizes and initialisation of `DiagonalSSM` (chapter 1)."""

    channels: int = 32  # H: input = output channels, each with its own independent SSM
    state_dim: int = 16  # N: diagonal states per channel
    # complex eigenvalues (S4D-Lin, oscillating modes) or real ones (S4D-Real, pure
    # decay)
    complex_state: bool = True
    method: str = "zoh"  # discretisation, "zoh" or "bilinear"
    # each channel's step size is drawn log-uniformly from [dt_min, dt_max]:
    dt_min: float = 1e-3
    # channels then see time scales from ~1/dt_max to ~1/dt_min steps
    dt_max: float = 1e-1
    seed: int = 0  # seeds the random initial weights (dt and C, D)

    def __post_init__(self):
        for name in ("channels", "state_dim"):
            check_int(name, getattr(self, name))
        check_choice("method", self.method, DISCRETIZATIONS)
        for name in ("dt_min", "dt_max"):
            check_positive(name, getattr(self, name))
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, "
                f"dt_max={self.dt_max}"
            )


class DiagonalSSM(nn.Module):
    r"""A linear time-invariant SSM layer with diagonal state matrix (S4D / LRU style).

    Each of the H channels is an independent single-input single-output SSM with N
    states:

    .. math::
        x'(t) = A x(t) + B u(t), \qquad y(t) = \mathrm{Re}\big(C x(t)\big) + D u(t),

    with diagonal `A`, discretised by `discretize` with a learned step per channel.
    `Re A = -exp(.)` is negative by construction, so the discrete eigenvalues lie inside
    the unit circle at initialisation and stay there during training. The initialisation
    is S4D's (Gu et al. 2022): `A_n = -1/2 + i pi n` for complex states,
    `A_n = -(n + 1)` for real ones, `B = 1`, `C` and `D` standard normal.

    `forward(u, mode)` maps (B, L, H) to (B, L, H) in one of three ways that give the
    same output: `"recurrence"` (step by step, as when acting), `"fft"` (a causal
    convolution with the impulse-response kernel, for training) and `"scan"` (a
    log-depth `parallel_scan` across chunks of time, see `chunked_scan`).

    All three modes (and `step`) check their input the same way: a tensor of the layer's
    dtype (float32 unless the layer was converted, e.g. with `.double()`), at least one
    sequence and one step, and every value finite. NaN or inf input is an error, because
    the modes would spread it differently (the FFT to every output, the scan to the rest
    of its chunk, the recurrence only forward in time). Taught in chapter 1
    (`01_state_space_models`).
    """

    def __init__(
        self,
        channels: int = 32,
        state_dim: int = 16,
        *,
        complex_state: bool = True,
        method: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        seed: int = 0,
    ):
        super().__init__()
        self.config = DiagonalSSMConfig(
            channels, state_dim, complex_state, method, dt_min, dt_max, seed
        )
        g = torch.Generator().manual_seed(seed)
        H, N = channels, state_dim
        log_dt = torch.rand(H, generator=g) * (
            math.log(dt_max) - math.log(dt_min)
        ) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        n = torch.arange(N, dtype=torch.float32).repeat(H, 1)
        # complex numbers are stored as (real, imag) pairs in a last dim of 2
        if complex_state:
            self.log_neg_real_A = nn.Parameter(torch.full((H, N), math.log(0.5)))
            self.imag_A = nn.Parameter(math.pi * n)
            self.B = nn.Parameter(
                torch.stack([torch.ones(H, N), torch.zeros(H, N)], dim=-1)
            )
            self.C = nn.Parameter(torch.randn(H, N, 2, generator=g) * math.sqrt(0.5))
        else:
            self.log_neg_real_A = nn.Parameter(torch.log(n + 1))
            self.register_parameter("imag_A", None)
            self.B = nn.Parameter(torch.ones(H, N))
            self.C = nn.Parameter(torch.randn(H, N, generator=g))
        self.D = nn.Parameter(torch.randn(H, generator=g))

    def _complex(self, p: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(p) if self.config.complex_state else p

    def continuous(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The continuous-time `(A, B, C)`, each of shape (H, N)."""
        real = -torch.exp(self.log_neg_real_A)
        A = torch.complex(real, self.imag_A) if self.config.complex_state else real
        return A, self._complex(self.B), self._complex(self.C)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The discrete `(A_bar, B_bar, C)`, each (H, N), with each channel's own
        step."""
        A, B, C = self.continuous()
        A_bar, B_bar = discretize(
            A, B, torch.exp(self.log_dt)[:, None], self.config.method
        )
        return A_bar, B_bar, C

    def kernel(self, length: int) -> torch.Tensor:
        r"""The impulse response $K_l = \mathrm{Re}\sum_n C_n \bar A_n^l \bar B_n$,
        shape (length, H).

        It excludes the `D u` feed-through. With a diagonal `A` the powers are
        elementwise, so the kernel is a Vandermonde product. We never build the (H, N,
        L) table of powers: writing $l = aT + b$ with $T \approx \sqrt L$,
        $K_{aT+b} = \mathrm{Re}\sum_n (C_n \bar B_n \bar A_n^{aT})\,\bar A_n^{b}$, one
        (L/T, N) @ (N, T) matrix product per channel from two small tables of powers.
        """
        A_bar, B_bar, C = as_complex(*self.discrete())
        block = math.isqrt(length - 1) + 1  # T >= sqrt(L), so L/T <= T
        blocks = -(-length // block)
        # (H, N, L/T)
        coarse = (C * B_bar)[..., None] * powers_of(A_bar, torch.arange(blocks) * block)
        fine = powers_of(A_bar, torch.arange(block))  # (H, N, T)
        # (H, L/T, T): row a, column b holds K_{aT+b}
        K = (coarse.transpose(1, 2) @ fine).real
        return K.flatten(1)[:, :length].T

    def init_state(self, batch_size: int = 1) -> torch.Tensor:
        """The zero state, shape (batch_size, H, N), complex if the layer is."""
        batch_size = check_int("batch_size", batch_size)
        A_bar = self.discrete()[0]
        return torch.zeros(
            batch_size, *A_bar.shape, dtype=A_bar.dtype, device=A_bar.device
        )

    def step(
        self, u_t: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for acting: `u_t` (B, H), `state` (B, H, N) → (`y_t` (B, H), next
        state)."""
        H, N = self.config.channels, self.config.state_dim
        self._check_values("u_t", u_t)
        if u_t.dim() != 2 or u_t.shape[-1] != H:
            raise ValueError(f"u_t must have shape (B, {H}), got {tuple(u_t.shape)}")
        if state.shape != (u_t.shape[0], H, N):
            raise ValueError(
                f"state must have shape ({u_t.shape[0]}, {H}, {N}), got "
                f"{tuple(state.shape)}"
            )
        return self._step(u_t, state, *self.discrete())

    def _step(self, u_t, state, A_bar, B_bar, C):
        state = A_bar * state + B_bar * u_t[..., None]
        return (C * state).sum(-1).real + self.D * u_t, state  # y = Re(C x) + D u

    def _check_sequence(self, u: torch.Tensor) -> None:
        H = self.config.channels
        self._check_values("u", u)
        if u.dim() != 3 or u.shape[-1] != H or u.shape[1] == 0:
            raise ValueError(
                f"u must have shape (B, L, {H}) with L >= 1, got {tuple(u.shape)}"
            )

    def _check_values(self, name: str, u) -> None:
        """The checks every mode shares: a tensor of the layer's dtype, a batch of at
        least one, all finite."""
        dtype = self.log_dt.dtype
        if not isinstance(u, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor, got {type(u).__name__}; "
                f"convert it with torch.as_tensor({name}, dtype={dtype})"
            )
        if u.dtype != dtype:
            raise TypeError(
                f"{name} has dtype {u.dtype} but the layer's weights are {dtype}; "
                f"pass {name}.to({dtype}) (or convert the layer, e.g. layer.double())"
            )
        if u.dim() >= 1 and u.shape[0] == 0:
            raise ValueError(
                f"{name} has an empty batch (shape {tuple(u.shape)}); pass at least "
                "one sequence"
            )
        bad = int((~torch.isfinite(u)).sum())
        if bad:
            raise ValueError(
                f"{name} has {bad} NaN/inf value(s); every mode needs finite inputs "
                "(clean or mask them first)"
            )

    def forward(
        self, u: torch.Tensor, mode: str = "fft", chunk: int = SCAN_CHUNK
    ) -> torch.Tensor:
        """Map inputs `u` (B, L, H) to outputs (B, L, H), from the zero state, by
        `mode`.

        `chunk` is the chunk length of the `"scan"` mode (see `chunked_scan`).
        """
        self._check_sequence(u)
        check_choice("mode", mode, COMPUTE_MODES)
        if mode == "scan":
            return self.chunked_scan(u, chunk)
        if mode == "fft":
            length = u.shape[1]
            # zero-padding makes the FFT's circular convolution a causal, linear one
            n = 2 * length
            # (B, H, L) contiguous: each channel's sequence is one contiguous row for
            # the FFT
            U = torch.fft.rfft(u.transpose(1, 2).contiguous(), n=n)
            K = torch.fft.rfft(self.kernel(length).T, n=n)
            return (
                torch.fft.irfft(U * K, n=n)[..., :length].transpose(1, 2) + self.D * u
            )
        A_bar, B_bar, C = self.discrete()
        state, outputs = self.init_state(u.shape[0]), []
        # unbind, not u[:, t]: indexing in a loop makes backward O(L^2)
        for u_t in u.unbind(dim=1):
            y_t, state = self._step(u_t, state, A_bar, B_bar, C)
            outputs.append(y_t)
        return torch.stack(outputs, dim=1)

    def chunked_scan(self, u: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
        r"""The `"scan"` mode: `parallel_scan` across chunks, matrix products within
        them.

        Cut time into $M$ chunks of $T$ = `chunk` steps. Inside a chunk that starts from
        state $x^{\rm in}$, step $s$ has state
        $\bar A^{s+1} x^{\rm in} + \sum_{r \le s} \bar A^{s-r} \bar B u_r$, so

        - its output is $\sum_{r \le s} K_{s-r} u_r$ (a T x T lower-triangular Toeplitz
          matrix of kernel taps, applied to the chunk's inputs) plus
          $\mathrm{Re}(C \bar A^{s+1} x^{\rm in})$;
        - its end state is $\bar A^T x^{\rm in} + \sum_r \bar A^{T-1-r} \bar B u_r$: a
          recurrence from chunk to chunk with multiplier $\bar A^T$, which
          `parallel_scan` solves in $\log_2 M$ levels.

        Only one state per chunk is stored, not one per step; the rest is matrix
        products. This is the chunkwise algorithm of Mamba-2 (Dao and Gu 2024).
        `chunk=1` is the plain scan over every step's state. Taught in chapter 1
        (`01_state_space_models`).
        """
        self._check_sequence(u)
        chunk = check_int("chunk", chunk)
        A_bar, B_bar, C = as_complex(*self.discrete())
        batch, length, H = u.shape
        # one chunk at most: a longer one would only add zeros
        chunk = min(int(chunk), length)
        chunks = -(-length // chunk)
        # zeros appended at the end change no earlier output
        if chunks * chunk != length:
            u = torch.cat([u, u.new_zeros(batch, chunks * chunk - length, H)], dim=1)
        # (H, B*M, T): one row per (sequence, chunk), contiguous for the batched matrix
        # products
        rows = (
            u.reshape(batch, chunks, chunk, H)
            .permute(3, 0, 1, 2)
            .reshape(H, batch * chunks, chunk)
        )
        # A_bar^0 ... A_bar^T, (H, N, T+1)
        powers = powers_of(A_bar, torch.arange(chunk + 1, device=u.device))

        # K_0 ... K_{T-1}, (H, T)
        taps = ((C * B_bar)[..., None] * powers[..., :chunk]).sum(1).real
        steps = torch.arange(chunk, device=u.device)
        lag = steps[None, :] - steps[:, None]  # [r, s] -> s - r
        toeplitz = taps[:, lag.clamp(min=0)] * (lag >= 0)  # (H, T, T), zero where r > s
        within = rows @ toeplitz  # (H, B*M, T)

        # A_bar^{T-1-r} B_bar, (H, N, T)
        into_end = B_bar[..., None] * powers[..., :chunk].flip(-1)
        ends = real_times_complex(rows, into_end.mT)  # (H, B*M, N)
        ends = parallel_scan(
            powers[..., chunk], ends.reshape(H, batch, chunks, -1).permute(1, 2, 0, 3)
        )
        # (B, M, H, N)
        starts = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)

        from_start = C[..., None] * powers[..., 1:]  # C A_bar^{s+1}, (H, N, T)
        carried = real_part_of_product(
            starts.permute(2, 0, 1, 3).reshape(H, batch * chunks, -1), from_start
        )
        y = (
            (within + carried)
            .reshape(H, batch, chunks * chunk)
            .permute(1, 2, 0)[:, :length]
        )
        return y + self.D * u[:, :length]

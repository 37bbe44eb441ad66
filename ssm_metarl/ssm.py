"""State space models: the model card's neural SSM and a linear diagonal SSM layer.

Taught in chapter 1 (``book/01_state_space_models.md``).
"""
from __future__ import annotations

import functools
import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["SSMConfig", "StateSpaceModel", "discretize", "parallel_scan", "DiagonalSSMConfig", "DiagonalSSM",
           "DISCRETIZATIONS", "MODES", "SCAN_CHUNK"]

DISCRETIZATIONS = ("zoh", "bilinear")  #: valid ``method`` values of :func:`discretize`
MODES = ("recurrence", "scan", "fft")  #: the three ways :class:`DiagonalSSM` computes its output
SCAN_CHUNK = 64  #: default chunk length of :class:`DiagonalSSM`'s ``"scan"`` mode (1 = the plain scan)


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
        """The initial state: zeros of shape (batch_size, state_dim), on the weights' device and dtype."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        weight = self.input_map.weight
        return torch.zeros(int(batch_size), self.state_dim, device=weight.device, dtype=weight.dtype)

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
        if xs.shape[1] == 0:
            raise ValueError("xs must have at least one time step (T >= 1), got T=0")
        if hidden is None:
            hidden = self.init_hidden(xs.shape[0])
        outputs = []
        for x in xs.unbind(dim=1):  # unbind, not xs[:, t]: indexing in a loop makes backward O(T^2)
            y, hidden = self(x, hidden)
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
            except (TypeError, ValueError) as exc:
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


# ---------------------------------------------------------------------------------------------
# A linear, time-invariant diagonal SSM (S4D / LRU style)
# ---------------------------------------------------------------------------------------------


def discretize(A: torch.Tensor, B: torch.Tensor, dt, method: str = "zoh") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Discretise the diagonal continuous SSM :math:`x' = A x + B u` with step ``dt``.

    Returns :math:`(\bar A, \bar B)` of the recurrence :math:`x_k = \bar A x_{k-1} + \bar B u_k`.
    ``A`` is the diagonal of the state matrix, real or complex, shape (..., N); ``B`` and ``dt``
    broadcast against it (``dt`` may be a float or, e.g., one step per channel of shape (H, 1)).

    - ``"zoh"`` (zero-order hold, exact when ``u`` is constant over each step):
      :math:`\bar A = e^{\Delta A}`, :math:`\bar B = (e^{\Delta A} - 1) A^{-1} B`.
    - ``"bilinear"`` (the trapezoid rule, Tustin's method):
      :math:`\bar A = (1 + \Delta A/2)/(1 - \Delta A/2)`, :math:`\bar B = \Delta B/(1 - \Delta A/2)`.

    Both map :math:`\mathrm{Re}\,A < 0` to :math:`|\bar A| < 1`: a stable continuous system stays
    stable for every step size. Taught in chapter 1 (``01_state_space_models``).
    """
    if method not in DISCRETIZATIONS:
        raise ValueError(f"method must be one of {DISCRETIZATIONS}, got {method!r}")
    dt = torch.as_tensor(dt, dtype=A.real.dtype, device=A.device)
    if not bool((dt > 0).all()):
        raise ValueError(f"dt must be positive, got min {dt.min().item():g}")
    dtA = dt * A
    if method == "zoh":
        if bool((A == 0).any()):
            raise ValueError("zoh needs every A != 0 (B-bar divides by A); use method='bilinear' for A = 0")
        # expm1, not exp(.) - 1: for small dt*A the subtraction would cancel most digits
        return torch.exp(dtA), torch.expm1(dtA) / A * B
    return (1 + dtA / 2) / (1 - dtA / 2), dt * B / (1 - dtA / 2)


def parallel_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Every state of :math:`x_t = a\,x_{t-1} + b_t` (with :math:`x_{-1} = 0`) in log-depth.

    ``b`` has shape (B, L, ...), time on dim 1; ``a`` is constant in time and broadcasts
    against ``b[:, 0]``. Returns the states, shaped like ``b``.

    Recursive doubling (the work-efficient scan of Blelloch 1990): two steps of the
    recurrence are one step of a recurrence with :math:`a^2`,
    :math:`x_{2i+1} = a^2 x_{2i-1} + (a\,b_{2i} + b_{2i+1})`. So we pair up neighbours, solve
    the half-length problem for the odd positions, and fill in each even position from its
    left neighbour, :math:`x_{2i} = a\,x_{2i-1} + b_{2i}`. Each level is a handful of
    elementwise operations over the whole sequence; there are :math:`\log_2 L` levels.
    Taught in chapter 1 (``01_state_space_models``).
    """
    length = b.shape[1]
    if length == 1:
        return b
    if length % 2:  # a zero input appended at the end changes no earlier state
        return parallel_scan(a, torch.cat([b, torch.zeros_like(b[:, :1])], dim=1))[:, :length]
    even, odd = b[:, 0::2], b[:, 1::2]
    x_odd = parallel_scan(a * a, a * even + odd)  # x_1, x_3, x_5, ...
    x_even = torch.cat([even[:, :1], even[:, 1:] + a * x_odd[:, :-1]], dim=1)  # x_0, x_2, ...
    return torch.stack([x_even, x_odd], dim=2).flatten(1, 2)  # interleave back to x_0, x_1, ...


@dataclass(frozen=True)
class DiagonalSSMConfig:
    """Sizes and initialisation of :class:`DiagonalSSM`."""

    channels: int = 32  # H: input = output channels, each with its own independent SSM
    state_dim: int = 16  # N: diagonal states per channel
    complex_state: bool = True  # complex eigenvalues (S4D-Lin, oscillating modes) or real ones (S4D-Real, pure decay)
    method: str = "zoh"  # discretisation, "zoh" or "bilinear"
    dt_min: float = 1e-3  # each channel's step size is drawn log-uniformly from [dt_min, dt_max]:
    dt_max: float = 1e-1  # channels then see time scales from ~1/dt_max to ~1/dt_min steps
    seed: int = 0  # seeds the random initial weights (dt and C, D)

    def __post_init__(self):
        for name in ("channels", "state_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.method not in DISCRETIZATIONS:
            raise ValueError(f"method must be one of {DISCRETIZATIONS}, got {self.method!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")


class DiagonalSSM(nn.Module):
    r"""A linear time-invariant SSM layer with diagonal state matrix (S4D / LRU style).

    Each of the H channels is an independent single-input single-output SSM with N states:

    .. math::
        x'(t) = A x(t) + B u(t), \qquad y(t) = \mathrm{Re}\big(C x(t)\big) + D u(t),

    with diagonal ``A``, discretised by :func:`discretize` with a learned step per channel.
    ``Re A = -exp(.)`` is negative by construction, so the discrete eigenvalues lie inside the
    unit circle at initialisation and stay there during training. The initialisation is S4D's
    (Gu et al. 2022): ``A_n = -1/2 + i pi n`` for complex states, ``A_n = -(n + 1)`` for real ones,
    ``B = 1``, ``C`` and ``D`` standard normal.

    ``forward(u, mode)`` maps (B, L, H) to (B, L, H) in one of three ways that give the
    same output: ``"recurrence"`` (step by step, as when acting), ``"fft"`` (a causal
    convolution with the impulse-response kernel, for training) and ``"scan"`` (a
    log-depth :func:`parallel_scan` across chunks of time, see :meth:`chunked_scan`).
    Taught in chapter 1 (``01_state_space_models``).
    """

    def __init__(self, channels: int = 32, state_dim: int = 16, *, complex_state: bool = True,
                 method: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0):
        super().__init__()
        self.config = DiagonalSSMConfig(channels, state_dim, complex_state, method, dt_min, dt_max, seed)
        g = torch.Generator().manual_seed(seed)
        H, N = channels, state_dim
        log_dt = torch.rand(H, generator=g) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        n = torch.arange(N, dtype=torch.float32).repeat(H, 1)
        if complex_state:  # complex numbers are stored as (real, imag) pairs in a last dim of 2
            self.log_neg_real_A = nn.Parameter(torch.full((H, N), math.log(0.5)))
            self.imag_A = nn.Parameter(math.pi * n)
            self.B = nn.Parameter(torch.stack([torch.ones(H, N), torch.zeros(H, N)], dim=-1))
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
        """The continuous-time ``(A, B, C)``, each of shape (H, N)."""
        real = -torch.exp(self.log_neg_real_A)
        A = torch.complex(real, self.imag_A) if self.config.complex_state else real
        return A, self._complex(self.B), self._complex(self.C)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The discrete ``(A_bar, B_bar, C)``, each (H, N), with each channel's own step."""
        A, B, C = self.continuous()
        A_bar, B_bar = discretize(A, B, torch.exp(self.log_dt)[:, None], self.config.method)
        return A_bar, B_bar, C

    def kernel(self, length: int) -> torch.Tensor:
        r"""The impulse response :math:`K_l = \mathrm{Re}\sum_n C_n \bar A_n^l \bar B_n`, shape (length, H).

        It excludes the ``D u`` feed-through. With a diagonal ``A`` the powers are elementwise,
        so the kernel is a Vandermonde product. We never build the (H, N, L) table of powers:
        writing :math:`l = aT + b` with :math:`T \approx \sqrt L`,
        :math:`K_{aT+b} = \mathrm{Re}\sum_n (C_n \bar B_n \bar A_n^{aT})\,\bar A_n^{b}`, one
        (L/T, N) @ (N, T) matrix product per channel from two small tables of powers.
        """
        A_bar, B_bar, C = _as_complex(*self.discrete())
        block = math.isqrt(length - 1) + 1  # T >= sqrt(L), so L/T <= T
        blocks = -(-length // block)
        coarse = (C * B_bar)[..., None] * _powers(A_bar, torch.arange(blocks) * block)  # (H, N, L/T)
        fine = _powers(A_bar, torch.arange(block))  # (H, N, T)
        K = (coarse.transpose(1, 2) @ fine).real  # (H, L/T, T): row a, column b holds K_{aT+b}
        return K.flatten(1)[:, :length].T

    def init_state(self, batch_size: int = 1) -> torch.Tensor:
        """The zero state, shape (batch_size, H, N), complex if the layer is."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        A_bar = self.discrete()[0]
        return torch.zeros(int(batch_size), *A_bar.shape, dtype=A_bar.dtype, device=A_bar.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for acting: ``u_t`` (B, H), ``state`` (B, H, N) → (``y_t`` (B, H), next state)."""
        H, N = self.config.channels, self.config.state_dim
        if u_t.dim() != 2 or u_t.shape[-1] != H:
            raise ValueError(f"u_t must have shape (B, {H}), got {tuple(u_t.shape)}")
        if state.shape != (u_t.shape[0], H, N):
            raise ValueError(f"state must have shape ({u_t.shape[0]}, {H}, {N}), got {tuple(state.shape)}")
        return self._step(u_t, state, *self.discrete())

    def _step(self, u_t, state, A_bar, B_bar, C):
        state = A_bar * state + B_bar * u_t[..., None]
        return (C * state).sum(-1).real + self.D * u_t, state  # y = Re(C x) + D u

    def _check_sequence(self, u: torch.Tensor) -> None:
        H = self.config.channels
        if u.dim() != 3 or u.shape[-1] != H or u.shape[1] == 0:
            raise ValueError(f"u must have shape (B, L, {H}) with L >= 1, got {tuple(u.shape)}")

    def forward(self, u: torch.Tensor, mode: str = "fft", chunk: int = SCAN_CHUNK) -> torch.Tensor:
        """Map inputs ``u`` (B, L, H) to outputs (B, L, H), from the zero state, by ``mode``.

        ``chunk`` is the chunk length of the ``"scan"`` mode (see :meth:`chunked_scan`).
        """
        self._check_sequence(u)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "scan":
            return self.chunked_scan(u, chunk)
        if mode == "fft":
            length = u.shape[1]
            n = 2 * length  # zero-padding makes the FFT's circular convolution a causal, linear one
            # (B, H, L) contiguous: each channel's sequence is one contiguous row for the FFT
            U = torch.fft.rfft(u.transpose(1, 2).contiguous(), n=n)
            K = torch.fft.rfft(self.kernel(length).T, n=n)
            return torch.fft.irfft(U * K, n=n)[..., :length].transpose(1, 2) + self.D * u
        A_bar, B_bar, C = self.discrete()
        state, outputs = self.init_state(u.shape[0]), []
        for u_t in u.unbind(dim=1):  # unbind, not u[:, t]: indexing in a loop makes backward O(L^2)
            y_t, state = self._step(u_t, state, A_bar, B_bar, C)
            outputs.append(y_t)
        return torch.stack(outputs, dim=1)

    def chunked_scan(self, u: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
        r"""The ``"scan"`` mode: :func:`parallel_scan` across chunks, matrix products within them.

        Cut time into :math:`M` chunks of :math:`T` = ``chunk`` steps. Inside a chunk that
        starts from state :math:`x^{\rm in}`, step :math:`s` has state
        :math:`\bar A^{s+1} x^{\rm in} + \sum_{r \le s} \bar A^{s-r} \bar B u_r`, so

        - its output is :math:`\sum_{r \le s} K_{s-r} u_r` (a T x T lower-triangular
          Toeplitz matrix of kernel taps, applied to the chunk's inputs) plus
          :math:`\mathrm{Re}(C \bar A^{s+1} x^{\rm in})`;
        - its end state is :math:`\bar A^T x^{\rm in} + \sum_r \bar A^{T-1-r} \bar B u_r`:
          a recurrence from chunk to chunk with multiplier :math:`\bar A^T`, which
          :func:`parallel_scan` solves in :math:`\log_2 M` levels.

        Only one state per chunk is stored, not one per step; the rest is matrix products.
        This is the chunkwise algorithm of Mamba-2 (Dao and Gu 2024). ``chunk=1`` is the plain
        scan over every step's state. Taught in chapter 1 (``01_state_space_models``).
        """
        self._check_sequence(u)
        if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk <= 0:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        A_bar, B_bar, C = _as_complex(*self.discrete())
        batch, length, H = u.shape
        chunk = min(int(chunk), length)  # one chunk at most: a longer one would only add zeros
        chunks = -(-length // chunk)
        if chunks * chunk != length:  # zeros appended at the end change no earlier output
            u = torch.cat([u, u.new_zeros(batch, chunks * chunk - length, H)], dim=1)
        # (H, B*M, T): one row per (sequence, chunk), contiguous for the batched matrix products
        rows = u.reshape(batch, chunks, chunk, H).permute(3, 0, 1, 2).reshape(H, batch * chunks, chunk)
        powers = _powers(A_bar, torch.arange(chunk + 1, device=u.device))  # A_bar^0 ... A_bar^T, (H, N, T+1)

        taps = ((C * B_bar)[..., None] * powers[..., :chunk]).sum(1).real  # K_0 ... K_{T-1}, (H, T)
        steps = torch.arange(chunk, device=u.device)
        lag = steps[None, :] - steps[:, None]  # [r, s] -> s - r
        toeplitz = taps[:, lag.clamp(min=0)] * (lag >= 0)  # (H, T, T), zero where r > s
        within = rows @ toeplitz  # (H, B*M, T)

        into_end = B_bar[..., None] * powers[..., :chunk].flip(-1)  # A_bar^{T-1-r} B_bar, (H, N, T)
        ends = _real_times_complex(rows, into_end.mT)  # (H, B*M, N)
        ends = parallel_scan(powers[..., chunk], ends.reshape(H, batch, chunks, -1).permute(1, 2, 0, 3))
        starts = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)  # (B, M, H, N)

        from_start = C[..., None] * powers[..., 1:]  # C A_bar^{s+1}, (H, N, T)
        carried = _real_part_of_product(starts.permute(2, 0, 1, 3).reshape(H, batch * chunks, -1), from_start)
        y = (within + carried).reshape(H, batch, chunks * chunk).permute(1, 2, 0)[:, :length]
        return y + self.D * u[:, :length]


def _as_complex(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Real tensors promoted to complex (at least complex64), so one code path serves both."""
    return tuple(t.to(torch.promote_types(t.dtype, torch.complex64)) for t in tensors)


# The two products below run as one real matrix product on interleaved (real, imaginary) pairs,
# rather than promoting the big real operand to complex (twice the memory) or multiplying strided
# .real/.imag views (which batched matmul and its backward copy one batch entry at a time).
def _real_times_complex(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w`` for real ``x`` (..., R, K) and complex ``w`` (..., K, M): complex (..., R, M)."""
    pairs = torch.view_as_real(w).reshape(*w.shape[:-1], -1)  # (..., K, 2M): re, im interleaved
    return torch.view_as_complex((x @ pairs).reshape(*x.shape[:-1], -1, 2))


def _real_part_of_product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Re(x @ w)`` for complex ``x`` (..., R, K) and ``w`` (..., K, M): real (..., R, M)."""
    # Re(x w) = x_re w_re - x_im w_im, as one product of width 2K
    rows = torch.stack([w.real, -w.imag], dim=-2).reshape(*w.shape[:-2], -1, w.shape[-1])  # (..., 2K, M)
    return torch.view_as_real(x).reshape(*x.shape[:-1], -1) @ rows


def _powers(A_bar: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """``A_bar`` (H, N), complex, raised to each integer exponent (K,): shape (H, N, K)."""
    # exp(k log A_bar): every power at once, with no chain of products to wait on
    return torch.exp(torch.log(A_bar)[..., None] * exponents.to(A_bar.device, A_bar.real.dtype))

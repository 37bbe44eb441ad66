"""The linear recurrence $x_k = \bar A x_{k-1} + \bar B u_k$ of chapter 1: how to get
it and how to solve it fast.

`discretize` turns a continuous diagonal SSM into the recurrence (zero-order hold or
bilinear); `parallel_scan` computes all its states in log-depth, and `scan_with_resets`
does so across episode boundaries (chapter 7); `powers_of` raises the
diagonal $\bar A$ to many exponents at once; the complex products run as real matrix
products. `ssm_metarl.models.s4d.DiagonalSSM` is built from these.
Taught in chapter 1 (`book/01_state_space_models.md`).
"""

from __future__ import annotations

import torch

from ..io.validation import check_choice

__all__ = [
    "discretize",
    "parallel_scan",
    "scan_with_resets",
    "powers_of",
    "as_complex",
    "real_times_complex",
    "real_part_of_product",
    "DISCRETIZATIONS",
]

DISCRETIZATIONS = ("zoh", "bilinear")  #: valid `method` values of `discretize`


def discretize(
    A: torch.Tensor, B: torch.Tensor, dt, method: str = "zoh"
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Discretise the diagonal continuous SSM $x' = A x + B u$ with step `dt`.

    Returns $(\bar A, \bar B)$ of the recurrence $x_k = \bar A x_{k-1} + \bar B u_k$.
    `A` is the diagonal of the state matrix, real or complex, shape (..., N); `B` and
    `dt` broadcast against it (`dt` may be a float or, e.g., one step per channel of
    shape (H, 1)).

    - `"zoh"` (zero-order hold, exact when `u` is constant over each step):
      $\bar A = e^{\Delta A}$, $\bar B = (e^{\Delta A} - 1) A^{-1} B$.
    - `"bilinear"` (the trapezoid rule, Tustin's method):
      $\bar A = (1 + \Delta A/2)/(1 - \Delta A/2)$,
      $\bar B = \Delta B/(1 - \Delta A/2)$.

    Both map $\mathrm{Re}\,A < 0$ to $|\bar A| < 1$: a stable continuous system stays
    stable for every step size. Taught in chapter 1 (`01_state_space_models`).
    """
    check_choice("method", method, DISCRETIZATIONS)
    dt = torch.as_tensor(dt, dtype=A.real.dtype, device=A.device)
    if not bool(((dt > 0) & torch.isfinite(dt)).all()):
        raise ValueError(
            f"dt must be finite and positive, got min {dt.min().item():g}, max "
            f"{dt.max().item():g}"
        )
    dtA = dt * A
    if method == "zoh":
        if bool((A == 0).any()):
            raise ValueError(
                "zoh needs every A != 0 (B-bar divides by A); use method='bilinear' "
                "for A = 0"
            )
        # expm1, not exp(.) - 1: for small dt*A the subtraction would cancel most digits
        return torch.exp(dtA), torch.expm1(dtA) / A * B
    return (1 + dtA / 2) / (1 - dtA / 2), dt * B / (1 - dtA / 2)


def parallel_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Every state of $x_t = a\,x_{t-1} + b_t$ (with $x_{-1} = 0$) in log-depth.

    `b` has shape (B, L, ...), time on dim 1; `a` is constant in time and broadcasts
    against `b[:, 0]`. Returns the states, shaped like `b`.

    Recursive doubling (the work-efficient scan of Blelloch 1990): two steps of the
    recurrence are one step of a recurrence with $a^2$,
    $x_{2i+1} = a^2 x_{2i-1} + (a\,b_{2i} + b_{2i+1})$. So we pair up neighbours, solve
    the half-length problem for the odd positions, and fill in each even position from
    its left neighbour, $x_{2i} = a\,x_{2i-1} + b_{2i}$. Each level is a handful of
    elementwise operations over the whole sequence; there are $\log_2 L$ levels. Taught
    in chapter 1 (`01_state_space_models`).
    """
    if not isinstance(b, torch.Tensor) or b.dim() < 2 or b.shape[1] == 0:
        raise ValueError(
            "b must be a tensor of shape (B, L, ...) with L >= 1, got "
            f"{getattr(b, 'shape', b)!r}"
        )
    length = b.shape[1]
    if length == 1:
        return b
    if length % 2:  # a zero input appended at the end changes no earlier state
        return parallel_scan(a, torch.cat([b, torch.zeros_like(b[:, :1])], dim=1))[
            :, :length
        ]
    even, odd = b[:, 0::2], b[:, 1::2]
    x_odd = parallel_scan(a * a, a * even + odd)  # x_1, x_3, x_5, ...
    # x_0, x_2, ...
    x_even = torch.cat([even[:, :1], even[:, 1:] + a * x_odd[:, :-1]], dim=1)
    # interleave back to x_0, x_1, ...
    return torch.stack([x_even, x_odd], dim=2).flatten(1, 2)


def scan_with_resets(a: torch.Tensor, b: torch.Tensor, resets: torch.Tensor):
    r"""Every state of $x_t = a_t\,x_{t-1} + b_t$ where a reset at $t$ starts afresh,
    $x_t = b_t$, in log-depth: the resettable scan of Lu et al. (2023).

    A reset is the recurrence with $a_t = 0$ at that step, so one sequence can hold
    many episodes back to back and still train in one parallel scan. `b` has shape
    (B, L, ...); `a` broadcasts against it (constant, or time-varying (B, L, ...));
    `resets` is a (B, L) boolean mask. Two steps compose into one,
    $(a_1, b_1) \circ (a_2, b_2) = (a_2 a_1,\; a_2 b_1 + b_2)$, which is associative,
    so the recursive doubling of `parallel_scan` applies with time-varying $a$.
    Defined in chapter 7.
    """
    if not isinstance(b, torch.Tensor) or b.dim() < 2 or b.shape[1] == 0:
        raise ValueError(
            "b must be a tensor of shape (B, L, ...) with L >= 1, got "
            f"{getattr(b, 'shape', b)!r}"
        )
    if resets.shape != b.shape[:2]:
        raise ValueError(
            f"resets must have shape (B, L) = {tuple(b.shape[:2])}, got "
            f"{tuple(resets.shape)}"
        )
    keep = (~resets.bool()).to(b.dtype).reshape(*b.shape[:2], *[1] * (b.dim() - 2))
    a = a.unsqueeze(1) if a.dim() == b.dim() - 1 else a  # constant in time: (B, 1, ...)
    return _scan_varying(a * keep, b)


def _scan_varying(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`parallel_scan` with a time-varying `a` of b's shape (x_{-1} = 0)."""
    length = b.shape[1]
    if length == 1:
        return b
    if length % 2:  # pad with a step that changes nothing before it
        pad = torch.zeros_like(b[:, :1])
        return _scan_varying(
            torch.cat([a, torch.ones_like(a[:, :1])], 1), torch.cat([b, pad], 1)
        )[:, :length]
    a_even, a_odd, b_even, b_odd = a[:, 0::2], a[:, 1::2], b[:, 0::2], b[:, 1::2]
    x_odd = _scan_varying(a_odd * a_even, a_odd * b_even + b_odd)  # x_1, x_3, ...
    x_even = torch.cat(
        [b_even[:, :1], b_even[:, 1:] + a_even[:, 1:] * x_odd[:, :-1]], dim=1
    )
    return torch.stack([x_even, x_odd], dim=2).flatten(1, 2)


def as_complex(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Real tensors promoted to complex (at least complex64), so one code path serves
    both (chapter 1)."""
    return tuple(t.to(torch.promote_types(t.dtype, torch.complex64)) for t in tensors)


# The two products below run as one real matrix product on interleaved (real, imaginary)
# pairs, rather than promoting the big real operand to complex (twice the memory) or
# multiplying strided .real/.imag views (which batched matmul and its backward copy one
# batch entry at a time).
def real_times_complex(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`x @ w` for real `x` (..., R, K) and complex `w` (..., K, M): complex (..., R, M)
    (chapter 1)."""
    # (..., K, 2M): re, im interleaved
    pairs = torch.view_as_real(w).reshape(*w.shape[:-1], -1)
    return torch.view_as_complex((x @ pairs).reshape(*x.shape[:-1], -1, 2))


def real_part_of_product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`Re(x @ w)` for complex `x` (..., R, K) and `w` (..., K, M): real (..., R, M)
    (chapter 1)."""
    # Re(x w) = x_re w_re - x_im w_im, as one product of width 2K
    # (..., 2K, M)
    rows = torch.stack([w.real, -w.imag], dim=-2).reshape(
        *w.shape[:-2], -1, w.shape[-1]
    )
    return torch.view_as_real(x).reshape(*x.shape[:-1], -1) @ rows


def powers_of(A_bar: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """`A_bar` (H, N), complex, raised to each integer exponent (K,): shape (H, N, K)
    (chapter 1)."""
    # exp(k log A_bar): every power at once, with no chain of products to wait on
    return torch.exp(
        torch.log(A_bar)[..., None] * exponents.to(A_bar.device, A_bar.real.dtype)
    )

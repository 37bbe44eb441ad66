"""Chapter 1's timed variants of `DiagonalSSM`: one forward + backward pass per mode.

`forward_backward_variants` builds the zero-argument functions that chapter 1 and
`python -m ssm_metarl bench ssm` time side by side with
`ssm_metarl.report.timing.time_rounds`, plus the FFT floor no FFT mode can beat.
Taught in chapter 1 (`book/01_state_space_models.md`).
"""

from __future__ import annotations

from typing import Callable

import torch

from .s4d import DiagonalSSM

__all__ = ["forward_backward_variants", "TIMED_VARIANTS"]

#: The variants `forward_backward_variants` times: name -> keyword arguments of
#: `DiagonalSSM.forward`.
TIMED_VARIANTS = {
    "loop": dict(mode="recurrence"),
    "plain scan": dict(mode="scan", chunk=1),
    "scan": dict(mode="scan"),
    "fft": dict(mode="fft"),
}


def forward_backward_variants(
    batch: int,
    channels: int,
    state_dim: int,
    length: int,
    seed: int = 0,
    names=("loop", "plain scan", "scan", "fft", "fft floor"),
) -> dict[str, Callable[[], torch.Tensor]]:
    """Zero-argument functions, one per variant, each running one forward + backward
    pass of a seeded `DiagonalSSM` on the same seeded input (B, L, H); pass them to
    `ssm_metarl.report.timing.time_rounds`. Each returns the layer's output (detached).

    `"loop"`, `"plain scan"`, `"scan"` and `"fft"` are `TIMED_VARIANTS`. `"fft floor"`
    runs only the three length-2L FFTs over all B x H sequences that any FFT
    convolution's forward and backward pass needs (the input's transform, the product's
    inverse transform, the output gradient's transform): no FFT mode can beat it. Taught
    in chapter 1 (`01_state_space_models`).
    """
    layer = DiagonalSSM(channels, state_dim, seed=seed)
    u = torch.randn(
        batch, length, channels, generator=torch.Generator().manual_seed(seed)
    )
    rows = u.transpose(1, 2).contiguous()  # one row per (sequence, channel)

    def run(options):
        layer.zero_grad(set_to_none=True)
        y = layer(u, **options)
        y.square().mean().backward()
        return y.detach()

    def floor():
        spectrum = torch.fft.rfft(rows, n=2 * length)
        return torch.fft.rfft(torch.fft.irfft(spectrum, n=2 * length))

    variants = {
        name: (lambda o=options: run(o)) for name, options in TIMED_VARIANTS.items()
    }
    variants["fft floor"] = floor
    return {name: variants[name] for name in names}

"""``python -m ssm_metarl bench ssm``: chapter 1's diagonal SSM, its loop, scan and FFT
modes timed side by side.

The three ways to run a linear SSM over a sequence give the same outputs; this
benchmark measures how much faster the scan and the FFT convolution are than the loop
over time steps, and how close the FFT comes to its floor (its three FFTs alone). The
registry of benchmarks is :mod:`ssm_metarl.bench.speed`. Taught in chapter 1
(``01_state_space_models``).
"""

from __future__ import annotations

import torch

from ..report.timing import load_average, speedup, time_rounds, torch_threads

__all__ = ["bench_ssm"]


def bench_ssm(args) -> dict:
    """Forward + backward time of :class:`~ssm_metarl.DiagonalSSM`'s three modes, side
    by side.

    Batch 16, 32 channels, L in {512, 2048}; the layer's default 16 complex states per
    channel, and 1 state per channel to show how the per-step work moves the balance.
    Timed variants:

    - ``recurrence``: the Python loop over time steps;
    - ``scan``: the chunked scan (chunks of ``SCAN_CHUNK`` steps);
    - ``plain_scan``: the same with ``chunk=1``, a log-depth scan over every step's
      state;
    - ``fft``: the kernel and an FFT convolution;
    - ``fft_floor``: only the three length-2L FFTs over all B x H sequences that any FFT
      convolution's forward + backward runs (rfft of the input and of the output
      gradient, irfft of the product). ``loop / fft_floor`` bounds the speed-up any FFT
      mode could reach.

    Each configuration runs on one thread and on all of torch's threads: on a machine
    shared with other jobs, a multi-threaded operation waits for its slowest thread.
    Reports each variant's best seconds, its speed-up over the loop (mean per-round
    ratio, 95% bootstrap CI over rounds), and the largest difference between the modes'
    outputs. Chapter 1 (``01_state_space_models``) explains it.
    """
    from ..models.s4d import SCAN_CHUNK
    from ..models.s4d_speed import forward_backward_variants

    # sizes: chapter 6's speed section shrinks them
    batch, channels, rounds = 16, 32, getattr(args, "rounds", 5)
    modes = ("loop", "plain scan", "scan", "fft")
    rows = []
    for threads in getattr(args, "threads", None) or sorted(
        {1, torch.get_num_threads()}
    ):
        with torch_threads(threads):
            for state_dim in getattr(args, "state_dims", (16, 1)):
                for length in getattr(args, "lengths", (512, 2048)):
                    variants = forward_backward_variants(
                        batch, channels, state_dim, length, seed=args.seed
                    )
                    outputs = {name: variants[name]() for name in modes}
                    times = time_rounds(variants, rounds=rounds)
                    rows.append(
                        {
                            "threads": threads,
                            "batch": batch,
                            "channels": channels,
                            "state_dim": state_dim,
                            "length": length,
                            "scan_chunk": SCAN_CHUNK,
                            "best_seconds": {
                                name: round(min(t), 5) for name, t in times.items()
                            },
                            "speedup_over_loop": {
                                name: str(speedup(times, "loop", name))
                                for name in ("scan", "plain scan", "fft", "fft floor")
                            },
                            "ratios": {
                                name: speedup(times, "loop", name).to_dict()
                                for name in ("scan", "fft", "fft floor")
                            }
                            | {
                                "fft_floor_over_fft": speedup(
                                    times, "fft", "fft floor"
                                ).to_dict()
                            },
                            "max_abs_difference": float(
                                max(
                                    (y - outputs["loop"]).abs().max()
                                    for y in outputs.values()
                                )
                            ),
                        }
                    )
    return {
        "benchmark": "ssm",
        "what": (
            f"forward+backward of DiagonalSSM, {rounds} interleaved rounds; speed-ups "
            "are the mean per-round ratio [95% bootstrap CI]"
        ),
        "targets_at_length_2048": "fft >= 100x and scan >= 2x faster than the loop",
        "load_average_1min": load_average(),
        "rows": rows,
    }

"""Speed benchmarks: ``python -m ssm_metarl bench NAME``.

Every benchmark times the things it compares side by side in one run, on the same
machine and inputs, and reports ratios; absolute seconds vary between machines.
A benchmark is a function ``bench_NAME(args) -> dict`` in this module; the CLI finds it
by name and prints its result as JSON.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import torch

__all__ = ["time_call", "time_interleaved", "available"]


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def available() -> list[str]:
    """Names of the benchmarks defined in this module."""
    return sorted(name[len("bench_"):] for name in globals() if name.startswith("bench_"))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Best wall time in seconds of each ``fns[name]()``, timed round-robin.

    The variants take turns (A, B, C, A, B, C, ...), so a burst of load from another process
    slows all of them rather than one; the minimum over repeats is the least disturbed run.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_ssm(args) -> dict:
    """Forward + backward time of :class:`~ssm_metarl.DiagonalSSM`'s three modes, side by side.

    Batch 16, 32 channels, L in {512, 2048}; the layer's default 16 complex states per channel,
    and 1 state per channel to show how the per-step work moves the loop-vs-scan balance.
    Each configuration runs on one thread and on all of torch's threads: on a machine shared
    with other jobs, a multi-threaded operation waits for its slowest thread.
    Reports seconds, the speed-ups of scan and FFT over the Python loop, and the largest
    difference between the modes' outputs. Chapter 1 (``01_state_space_models``) explains it.
    """
    from .ssm import MODES, DiagonalSSM

    batch, channels, repeats = 16, 32, 3
    all_threads = torch.get_num_threads()
    rows = []
    try:
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            for state_dim in (16, 1):
                for length in (512, 2048):
                    model = DiagonalSSM(channels, state_dim, seed=args.seed)
                    u = torch.randn(batch, length, channels, generator=_seeded(args.seed))

                    def forward_backward(mode):
                        model.zero_grad(set_to_none=True)
                        y = model(u, mode=mode)
                        y.square().mean().backward()
                        return y.detach()

                    outputs = {mode: forward_backward(mode) for mode in MODES}
                    seconds = time_interleaved({mode: (lambda m=mode: forward_backward(m)) for mode in MODES},
                                               repeats=repeats)
                    rows.append({
                        "threads": threads, "batch": batch, "channels": channels, "state_dim": state_dim,
                        "length": length, "seconds": {mode: round(s, 5) for mode, s in seconds.items()},
                        "scan_speedup_over_loop": round(seconds["recurrence"] / seconds["scan"], 2),
                        "fft_speedup_over_loop": round(seconds["recurrence"] / seconds["fft"], 1),
                        "max_abs_difference": float(max((outputs[m] - outputs["recurrence"]).abs().max()
                                                        for m in MODES)),
                    })
    finally:
        torch.set_num_threads(all_threads)
    return {"benchmark": "ssm", "what": f"forward+backward of DiagonalSSM, best of {repeats} interleaved runs",
            "load_average_1min": _load_average(), "rows": rows}


def _load_average() -> float | None:
    """The machine's 1-minute load average (other processes compete for the cores), if the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None

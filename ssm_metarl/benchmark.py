"""Speed benchmarks: ``python -m ssm_metarl bench NAME``.

Every benchmark times the things it compares side by side in one run, on the same
machine and inputs, and reports ratios; absolute seconds vary between machines.
A benchmark is a function ``bench_NAME(args) -> dict`` in this module; the CLI finds it
by name and prints its result as JSON.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ["time_call", "available"]


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

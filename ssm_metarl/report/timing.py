"""Timing side by side: interleaved rounds, speed-ups with a CI, and the thread count
held fixed.

Speed claims in the book are ratios of variants timed in turns in one run, never
absolute seconds. Taught in chapter 1 (``01_state_space_models``); used in chapters 2
and 3.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Callable

import torch

from .stats import Estimate, bootstrap_ci

__all__ = [
    "time_rounds",
    "time_interleaved",
    "speedup",
    "speed_words",
    "times_faster",
    "torch_threads",
    "load_average",
]


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the ``with`` block on ``n`` torch threads and restore the previous count
    afterwards, also when the block raises. Defined in chapter 1
    (``01_state_space_models``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def time_rounds(
    fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall time in seconds of each ``fns[name]()`` in every round, the variants taking
    turns.

    Within a round the variants run one after another (A, B, C, A, B, C, ...), so a
    burst of load from another process slows all of them rather than one. Defined in
    chapter 1 (``01_state_space_models``).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Best wall time in seconds of each ``fns[name]()`` over ``repeats`` rounds of
    :func:`time_rounds`:
    the least disturbed run. Defined in chapter 2 (``02_cartpole_tasks``)."""
    return {
        name: min(times) for name, times in time_rounds(fns, repeats, warmup).items()
    }


def speedup(times: dict[str, list[float]], baseline: str, name: str) -> Estimate:
    """How many times faster ``name`` ran than ``baseline``: the mean of the per-round
    ratios of :func:`time_rounds`, with a 95% bootstrap CI over rounds. Defined in
    chapter 1 (``01_state_space_models``).
    """
    return bootstrap_ci(
        [slow / fast for slow, fast in zip(times[baseline], times[name])]
    )


def speed_words(times: dict[str, list[float]], baseline: str, name: str) -> str:
    """How `name`'s speed compares with `baseline`'s, in words decided by the CI over
    rounds: "4.1× (95% CI 3.8–4.4×) faster than", "... slower than", or
    "not measurably faster or slower than". Defined in chapter 1
    (`01_state_space_models`)."""
    faster = speedup(times, baseline, name)
    if faster.low > 1:
        return f"{times_faster(faster)} faster than"
    if faster.high < 1:
        return f"{times_faster(speedup(times, name, baseline))} slower than"
    return "not measurably faster or slower than"


def times_faster(ratio: Estimate) -> str:
    """A speed-up with its CI as prose: "4.1× (95% CI 3.8–4.4×)". Defined in
    chapter 1."""
    return f"{ratio.mean:.1f}× (95% CI {ratio.low:.1f}–{ratio.high:.1f}×)"


def load_average() -> float | None:
    """The machine's 1-minute load average (other processes compete for the cores), if
    the OS reports it: every speed benchmark records it beside its times. Chapters 1-3
    (``python -m ssm_metarl bench``)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None

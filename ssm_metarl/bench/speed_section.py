"""Chapter 6's speed section (``python -m ssm_metarl benchmark --protocol speed``): the
``bench`` speed benchmarks re-run small, as ratios with CIs.

``speed_section`` calls the speed benchmarks of chapters 1-3
(:mod:`ssm_metarl.bench.speed`) at the sizes ``SPEED_SIZES``, in one run on one torch
thread: every figure is a ratio of variants timed in turns, with a 95% CI over rounds.
Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import time
from argparse import Namespace

from ..report.timing import torch_threads
from .speed_cartpole import bench_rollout
from .speed_maml import bench_maml
from .speed_ssm import bench_ssm

__all__ = ["SPEED_SIZES", "speed_section"]

#: The sizes of the speed section (the full ``bench`` commands use larger ones;
#: chapters 1-3 show them).
SPEED_SIZES = {
    "rollout": {"naive_steps": 1000, "rounds": 5, "policies": 2},
    "maml": {"episodes": 4, "repeats": 5, "orders": (False, True)},
    "ssm": {"lengths": (2048,), "state_dims": (16,), "rounds": 5},
}


def _est(d: dict) -> dict:
    return {k: d[k] for k in ("mean", "low", "high", "n") if k in d}


def speed_section(seed: int = 0, sizes: dict | None = None, progress=None) -> dict:
    """The issue's speed figures as ratios measured side by side in this run, on one
    torch thread (chapter 6).

    Rows: rollout throughput (``collect`` on 1,024 envs vs the naive loop, per policy),
    batched vs looped meta-gradient, the SSM's scan and FFT vs the loop and the FFT's
    floor vs the FFT. Each row: ``ratio`` (mean, and a 95% CI over interleaved rounds
    when the bench function provides one) and the raw bench output under ``raw``.
    """
    sizes = {k: {**v, **((sizes or {}).get(k, {}))} for k, v in SPEED_SIZES.items()}
    say = progress or (lambda msg: None)
    rows, raw, seconds = [], {}, {}

    def run(name: str, bench, **args) -> list[dict]:
        """Run one `bench` function, keep its JSON and its wall time; return its
        rows."""
        start = time.perf_counter()
        raw[name] = bench(Namespace(seed=seed, **args, **sizes[name]))
        seconds[name] = round(time.perf_counter() - start, 1)
        say(f"speed: {name} {seconds[name]} s")
        return raw[name]["rows"]

    with torch_threads(1):
        for r in run("rollout", bench_rollout, threads=[1]):
            rows.append(
                {
                    "name": (
                        "rollout throughput, collect() on 1,024 envs vs naive loop "
                        f"({r['policy']} SSM)"
                    ),
                    "ratio": _est(r["ratio"]),
                    "ci": "over rounds",
                }
            )
        for r in run("maml", bench_maml):
            rows.append(
                {
                    "name": f"meta-gradient, looped vs batched ({r['order']} order)",
                    "ratio": _est(r["loop_over_batched_ci"]),
                    "ci": "over rounds",
                }
            )
        for r in run("ssm", bench_ssm, threads=[1]):
            where = f"L={r['length']}, N={r['state_dim']}"
            for key, label in (
                ("scan", "SSM chunked scan vs loop"),
                ("fft", "SSM FFT vs loop"),
                ("fft_floor_over_fft", "SSM FFT's time over its floor's (its 3 FFTs)"),
            ):
                rows.append(
                    {
                        "name": f"{label} ({where})",
                        "ratio": _est(r["ratios"][key]),
                        "ci": "over rounds",
                    }
                )
    return {
        "what": (
            "how many times faster, variants timed in turns in one run, one torch "
            "thread; CI: 95% bootstrap over rounds"
        ),
        "sizes": {
            k: {a: list(b) if isinstance(b, tuple) else b for a, b in v.items()}
            for k, v in sizes.items()
        },
        "rows": rows,
        "seconds": seconds,
        "raw": raw,
    }

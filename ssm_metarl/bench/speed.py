"""The speed benchmarks of chapters 1-3: ``python -m ssm_metarl bench NAME`` runs
``bench_NAME`` from here.

Every benchmark times the things it compares side by side in one run, on the same
machine and inputs, and reports ratios; absolute seconds vary between machines. A
benchmark is a function ``bench_NAME(args) -> dict`` in the module of the chapter it
measures: :mod:`~ssm_metarl.bench.speed_ssm` (chapter 1),
:mod:`~ssm_metarl.bench.speed_cartpole` (chapter 2) and
:mod:`~ssm_metarl.bench.speed_maml` (chapter 3). This module collects them; the CLI
finds one by name and prints its result as JSON. The timing helpers are in
:mod:`ssm_metarl.report.timing`; chapter 6's ``benchmark --protocol speed`` runs the
same benchmarks at smaller sizes (:mod:`ssm_metarl.bench.speed_section`). Taught in
chapters 1-3.
"""

from __future__ import annotations

from .speed_cartpole import bench_rl, bench_rollout
from .speed_maml import bench_maml
from .speed_memory import bench_memory
from .speed_ssm import bench_ssm

__all__ = [
    "available",
    "bench_maml",
    "bench_memory",
    "bench_rl",
    "bench_rollout",
    "bench_ssm",
]


def available() -> list[str]:
    """Names of the benchmarks collected in this module
    (``python -m ssm_metarl bench NAME``; chapters 1-3)."""
    return sorted(
        name[len("bench_") :] for name in globals() if name.startswith("bench_")
    )

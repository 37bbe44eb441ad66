"""Two-level confidence intervals: over training runs and over tasks (chapters 3-6).

A method's result is a (runs, tasks) matrix: every independently trained model scored
on the same grid of tasks. Its uncertainty has two sources, the seed that trained the
model and the tasks it was scored on, and a CI over tasks alone (one model) misses the
first. The bootstrap here resamples both: training runs with replacement, and tasks
with replacement. The task grid is shared by every run and every method, so tasks are
resampled once per replicate and a difference between two methods stays paired by task
while each method's runs are resampled on their own. Beside the mean, `iqm_of_runs` is
the interquartile mean of the runs' means (rliable, Agarwal et al. 2021). Taught in
chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import numpy as np

from .stats import Estimate

__all__ = ["two_level_ci", "two_level_difference", "iqm_of_runs", "run_matrix"]


def run_matrix(scores, name: str = "scores") -> np.ndarray:
    """`scores` as a finite float (runs, tasks) matrix; a clear error otherwise
    (chapter 3)."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(
            f"{name} must be a (runs, tasks) matrix with at least one of each, got "
            f"shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return matrix


def _indices(rng, n_resamples: int, size: int) -> np.ndarray:
    return rng.integers(0, size, size=(n_resamples, size))


def _interval(values: np.ndarray, boot: np.ndarray, confidence: float, n: int):
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return Estimate(float(values), float(low), float(high), n, confidence)


def _resampled_means(matrix, runs, tasks) -> np.ndarray:
    """Mean of matrix[runs[b]][:, tasks[b]] for every replicate b."""
    picked = matrix[runs]  # (B, R, T)
    return np.take_along_axis(picked, tasks[:, None, :], axis=2).mean(axis=(1, 2))


def two_level_ci(
    scores, confidence: float = 0.95, n_resamples: int = 4000, seed: int = 0
) -> Estimate:
    """Mean of a (runs, tasks) matrix with a bootstrap CI that resamples training runs
    and tasks; `n` is the number of runs. Chapter 3."""
    matrix = run_matrix(scores)
    rng = np.random.default_rng(seed)
    runs = _indices(rng, n_resamples, matrix.shape[0])
    tasks = _indices(rng, n_resamples, matrix.shape[1])
    boot = _resampled_means(matrix, runs, tasks)
    return _interval(matrix.mean(), boot, confidence, matrix.shape[0])


def two_level_difference(
    a, b, confidence: float = 0.95, n_resamples: int = 4000, seed: int = 0
) -> Estimate:
    """mean(a) - mean(b) for two (runs, tasks) matrices on the same tasks, with a CI
    that resamples each method's runs on their own and the shared tasks once (so the
    difference stays paired by task). Chapter 3."""
    a, b = run_matrix(a, "a"), run_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"the two matrices must be scored on the same tasks, got {a.shape[1]} and "
            f"{b.shape[1]} task columns"
        )
    rng = np.random.default_rng(seed)
    tasks = _indices(rng, n_resamples, a.shape[1])
    runs_a = _indices(rng, n_resamples, a.shape[0])
    runs_b = _indices(rng, n_resamples, b.shape[0])
    boot = _resampled_means(a, runs_a, tasks) - _resampled_means(b, runs_b, tasks)
    return _interval(
        a.mean() - b.mean(), boot, confidence, int(min(a.shape[0], b.shape[0]))
    )


def iqm_of_runs(scores) -> float:
    """The interquartile mean of the runs' mean scores: with five runs, the mean of
    the middle three. Chapter 3."""
    means = np.sort(run_matrix(scores).mean(axis=1))
    cut = means.size // 4
    return float(means[cut : means.size - cut].mean())

"""Chapter 6's statistics beyond the mean: the interquartile mean and the probability
of improvement, with stratified-bootstrap CIs.

Following rliable (Agarwal et al. 2021): a (runs, tasks) score matrix is resampled run
by run within each task, so the interval includes both run-to-run and task-to-task
spread. Written with numpy in a few lines each (``rliable`` and ``scipy`` are not
needed). Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["iqm", "iqm_ci", "probability_of_improvement"]


def iqm(scores) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (Agarwal et al.
    2021). Chapter 6."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    return float(x[n // 4 : n - n // 4].mean()) if n >= 4 else float(x.mean())


def _stratified(matrix: np.ndarray, rng) -> np.ndarray:
    """Resample the runs (rows) within each task (column) independently: rliable's
    stratified bootstrap."""
    runs, tasks = matrix.shape
    idx = rng.integers(0, runs, size=(runs, tasks))
    return matrix[idx, np.arange(tasks)]


def iqm_ci(matrix, n_resamples: int = 2000, seed: int = 0) -> dict:
    """IQM of a (runs, tasks) score matrix with a 95% stratified-bootstrap CI.
    Chapter 6."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = [iqm(_stratified(matrix, rng)) for _ in range(n_resamples)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return {
        "mean": iqm(matrix),
        "low": float(low),
        "high": float(high),
        "n": int(matrix.size),
    }


def probability_of_improvement(x, y, n_resamples: int = 2000, seed: int = 0) -> dict:
    """P(X > Y) (ties count half), averaged over tasks, with a 95% stratified-bootstrap
    CI. Chapter 6.

    `x`, `y`: (runs, tasks) matrices of two agents on the same tasks.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def p(a, b):
        diff = a[:, None, :] - b[None, :, :]
        return float(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(0, 1)).mean())

    rng = np.random.default_rng(seed)
    boot = [p(_stratified(x, rng), _stratified(y, rng)) for _ in range(n_resamples)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return {
        "mean": p(x, y),
        "low": float(low),
        "high": float(high),
        "n": int(x.shape[1]),
    }

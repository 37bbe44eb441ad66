"""Chapter 6's statistics beyond the mean, computed with rliable: the interquartile
mean (IQM) and the probability of improvement, with stratified-bootstrap 95% CIs.

rliable (Agarwal et al. 2021, "Deep reinforcement learning at the edge of the
statistical precipice") reads an agent's result as a (runs, tasks) score matrix: one
row per independently trained model, one column per task. Its stratified bootstrap
resamples the runs within each task and, with ``task_bootstrap=True`` as here, the
tasks too, so the interval holds the run-to-run spread *and* the task-to-task spread.
(Resampling within tasks alone says nothing about other tasks: with identical runs it
gives a zero-width interval.) rliable 1.2 draws its bootstrap indices from numpy's
global generator, so each call here sets that generator from ``RandomState(seed)`` and
restores it afterwards: same seed, same interval, and the caller's random state is left
as it was. rliable is in the ``bench`` extra (``pip install 'ssm-metarl[bench]'``).
Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..report.two_level import run_matrix

__all__ = ["iqm", "iqm_ci", "probability_of_improvement"]


def _rliable():
    """rliable's ``library`` and ``metrics`` modules, or an error that says how to
    install them."""
    try:
        from rliable import library, metrics
    except ImportError as exc:
        raise ImportError(
            f"chapter 6's IQM and probability of improvement need rliable ({exc}); "
            "install it with: pip install 'ssm-metarl[bench]'"
        ) from None
    return library, metrics


@contextmanager
def _seeded(seed: int):
    """numpy's global generator set from ``RandomState(seed)`` for the block (rliable
    1.2 draws its indices there), then put back as it was."""
    saved = np.random.get_state()
    np.random.set_state(np.random.RandomState(seed).get_state())
    try:
        yield
    finally:
        np.random.set_state(saved)


def _interval(func, scores: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """rliable's percentile interval of ``func`` over a stratified bootstrap that
    resamples runs within tasks and the tasks themselves: (low, high)."""
    library, _ = _rliable()
    with _seeded(seed):
        _, interval = library.get_interval_estimates(
            {"x": scores},
            lambda s: np.array([func(s)]),
            task_bootstrap=True,
            reps=int(n_resamples),
        )
    return interval["x"].ravel()


def iqm(scores) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (the 25% trimmed
    mean of rliable's ``aggregate_iqm``, Agarwal et al. 2021). Chapter 6."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    return float(x[n // 4 : n - n // 4].mean()) if n >= 4 else float(x.mean())


def iqm_ci(matrix, n_resamples: int = 2000, seed: int = 0) -> dict:
    """IQM of a (runs, tasks) score matrix with rliable's 95% stratified-bootstrap CI,
    runs and tasks resampled (``n_resamples`` is rliable's ``reps``). Chapter 6."""
    matrix = run_matrix(matrix, "the IQM's score matrix")
    _, metrics = _rliable()
    low, high = _interval(metrics.aggregate_iqm, matrix, n_resamples, seed)
    return {
        "mean": float(metrics.aggregate_iqm(matrix)),
        "low": float(low),
        "high": float(high),
        "n": int(matrix.size),
    }


def _improvement(pairs: np.ndarray) -> float:
    """P(X > Y) (ties count half) over all run pairs of each task, averaged over tasks:
    rliable's ``probability_of_improvement`` (a Mann-Whitney U per task) on
    ``pairs[..., 0]`` = X and ``pairs[..., 1]`` = Y, without a scipy call per task."""
    x, y = pairs[..., 0], pairs[..., 1]
    diff = x[:, None, :] - y[None, :, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(0, 1)).mean())


def probability_of_improvement(x, y, n_resamples: int = 2000, seed: int = 0) -> dict:
    """P(X > Y) (ties count half), averaged over tasks, with rliable's 95%
    stratified-bootstrap CI. Chapter 6.

    `x`, `y`: (runs, tasks) matrices of two agents on the same tasks, with as many runs
    each. The bootstrap resamples each agent's runs on their own within every task, and
    the tasks once for both (the comparison stays paired by task).
    """
    x = run_matrix(x, "x")
    y = run_matrix(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"x is {x.shape} and y is {y.shape} (runs, tasks): score both agents on "
            "the same tasks with as many runs each"
        )
    _, metrics = _rliable()
    # a trailing axis of two: rliable draws a run index for every (run, task, agent)
    # cell and one task index per task, shared by both agents
    pairs = np.stack([x, y], axis=-1)
    low, high = _interval(_improvement, pairs, n_resamples, seed)
    return {
        "mean": float(metrics.probability_of_improvement(x, y)),
        "low": float(low),
        "high": float(high),
        "n": int(x.shape[1]),
    }

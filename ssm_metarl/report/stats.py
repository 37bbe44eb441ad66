"""Uncertainty for every number the book reports: bootstrap confidence intervals.

Taught in chapter 0 (``00_quick_tour``) and used by every later chapter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "Estimate",
    "bootstrap_ci",
    "difference_ci",
    "proportion_ci",
    "verdict",
    "VERDICTS",
]

#: The words :func:`verdict` chooses from: the CI of a difference is above 0, below 0,
#: or contains it.
VERDICTS = ("higher than", "lower than", "not measurably different from")


@dataclass(frozen=True)
class Estimate:
    """A mean with a bootstrap confidence interval [low, high] over ``n`` samples.
    Defined in chapter 0 (``00_quick_tour``)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def overlaps(self, other: "Estimate") -> bool:
        """True when the two intervals share any value."""
        return self.low <= other.high and other.low <= self.high

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.1f} [{self.low:.1f}, {self.high:.1f}]"


def bootstrap_ci(
    values, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> Estimate:
    """Mean of ``values`` with a percentile-bootstrap confidence interval.

    Resamples with replacement ``n_resamples`` times using a seeded generator, so the
    same values and seed always give the same interval. Defined in chapter 0
    (``00_quick_tour``).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value, got none")
    if not np.all(np.isfinite(values)):
        raise ValueError("bootstrap_ci got non-finite values (NaN or inf)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_resamples, values.size))
    means = values[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(
        float(values.mean()), float(low), float(high), int(values.size), confidence
    )


def difference_ci(
    a,
    b,
    paired: bool = False,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Estimate:
    """Bootstrap CI of mean(a) - mean(b).

    ``paired=True`` resamples matched pairs (same tasks, same seeds), which removes the
    task-to-task spread from the comparison. An interval that contains 0 means "no
    measurable difference" (see :func:`verdict`). Defined in chapter 0
    (``00_quick_tour``).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if paired:
        if a.shape != b.shape:
            raise ValueError(
                f"paired comparison needs equal lengths, got {a.size} and {b.size}"
            )
        return bootstrap_ci(a - b, confidence, n_resamples, seed)
    if a.size == 0 or b.size == 0:
        raise ValueError("difference_ci needs at least one value on each side")
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_resamples, b.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ma - mb, [alpha, 1.0 - alpha])
    return Estimate(
        float(a.mean() - b.mean()),
        float(low),
        float(high),
        int(min(a.size, b.size)),
        confidence,
    )


def verdict(difference: Estimate) -> str:
    """The words for a difference ``a - b`` with its CI (e.g. from
    :func:`difference_ci`):
    "higher than" when the whole interval is above 0, "lower than" when it is below 0,
    and "not measurably different from" when it contains 0. The book writes "a is
    {verdict} b". Defined in chapter 0 (``00_quick_tour``); used in every later chapter.
    """
    if difference.low > 0:
        return VERDICTS[0]
    if difference.high < 0:
        return VERDICTS[1]
    return VERDICTS[2]


def proportion_ci(hits, confidence: float = 0.95) -> Estimate:
    """The share of true values in ``hits`` with its Wilson score interval, which,
    unlike a bootstrap, does not collapse to [0, 0] when nothing hit. Defined in
    chapter 5 (``05_recursive_self_improvement``), for acceptance rates."""
    from statistics import NormalDist

    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 1 or hits.size == 0:
        raise ValueError(f"hits must be a non-empty 1-D sequence, got {hits.shape}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n, p = hits.size, float(hits.mean())
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, confidence)

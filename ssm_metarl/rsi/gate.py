"""The tests behind the acceptance gate: is a candidate's paired gain over the current
model real?

Every model of a cycle is scored on the same validation tasks, so the evidence is one
paired difference per task. `signflip_pvalue` is the gate's test: under "no gain" a
difference is as likely to be negative as positive, so flipping the signs at random
draws the statistic's null distribution exactly, whatever its shape. `t_pvalue` is the
textbook alternative, and `wilcoxon_pruner_prunes` asks Optuna's `WilcoxonPruner` (a
signed-rank test across problem instances) the same question, so chapter 5 can set the
three beside the percentile bootstrap the gate used before. Taught in chapter 5
(`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["signflip_pvalue", "t_pvalue", "wilcoxon_pruner_prunes", "paired_gains"]

#: Random sign patterns drawn per test: the p-value's own Monte Carlo error is then
#: below 0.002 at p = 0.025.
SIGN_FLIPS = 20_000


def paired_gains(candidate, current, margin: float = 0.0) -> np.ndarray:
    """Per-task candidate minus current return, less `margin`, as a finite float
    vector; a clear error otherwise (chapter 5)."""
    candidate, current = (np.asarray(v, dtype=np.float64) for v in (candidate, current))
    if candidate.ndim != 1 or candidate.shape != current.shape or candidate.size < 2:
        raise ValueError(
            "paired returns must be two vectors of the same length >= 2 (one return "
            f"per task), got shapes {candidate.shape} and {current.shape}"
        )
    gains = candidate - current
    if not np.all(np.isfinite(gains)):
        raise ValueError("paired returns hold non-finite values (NaN or inf)")
    return gains - margin


def signflip_pvalue(gains, n_flips: int = SIGN_FLIPS, seed: int = 0) -> float:
    """One-sided p-value of a mean gain above 0 by the sign-flip (paired permutation)
    test: the share of random sign patterns whose mean is at least the observed one,
    counting the observed pattern itself, so p is never 0 (chapter 5)."""
    gains = np.asarray(gains, dtype=np.float64)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, gains.size))
    flipped = (signs * gains).mean(axis=1)
    # a relative tolerance, so a pattern equal to the observed one up to rounding counts
    tied = gains.mean() - 1e-12 * max(1.0, float(np.abs(gains).mean()))
    return float((1 + np.sum(flipped >= tied)) / (1 + n_flips))


def t_pvalue(gains) -> float:
    """One-sided p-value of a mean gain above 0 by the paired t-test (chapter 5)."""
    from scipy import stats

    gains = np.asarray(gains, dtype=np.float64)
    if np.all(gains == gains[0]):  # no spread: the t statistic is undefined
        return 0.0 if gains[0] > 0 else 1.0
    return float(stats.ttest_1samp(gains, 0.0, alternative="greater").pvalue)


def wilcoxon_pruner_prunes(
    better, worse, p_threshold: float = 0.025, startup: int = 2
) -> bool:
    """Whether Optuna's `WilcoxonPruner` would prune a trial scoring `worse` on each
    task, against a best trial scoring `better`: the pruner's own verdict that `worse`
    is worse (chapter 5).

    Used as a gate, `better` is the candidate and `worse` the current model: the
    candidate is accepted when the current model would be pruned against it.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    better, worse = (np.asarray(v, dtype=np.float64) for v in (better, worse))
    with warnings.catch_warnings():  # experimental since Optuna 3.6; we pin its use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(
            p_threshold=p_threshold, n_startup_steps=startup
        )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.0},
            distributions={"x": distribution},
            value=float(better.mean()),
            intermediate_values=dict(enumerate(map(float, better))),
        )
    )
    trial = study.ask({"x": distribution})
    for task, value in enumerate(worse):
        trial.report(float(value), task)
    return bool(trial.should_prune())

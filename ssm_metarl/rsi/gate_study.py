"""How often each acceptance test is fooled, and how often it finds a real gain.

The same model scored twice with different seeds is a pair whose true gain is zero:
any test that accepts it has accepted noise. `repeated_scores` scores a model many
times on the loop's validation tasks; `acceptance_rates` splits the scores into
disjoint pairs and asks every test in `GATES` whether the second beats the first, with
a known gain added to the second (0: the false-acceptance rate; above 0: the power).
`loop_gate_rate` runs the loop's own `decide` on disjoint triples (the current model
and two identical candidates), Bonferroni split included. `rsi-gate` ships it all in
`models/rsi_gate.json`. Chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import numpy as np

from ..report.stats import Estimate, bootstrap_ci, proportion_ci
from .gate import paired_gains, signflip_pvalue, t_pvalue, wilcoxon_pruner_prunes
from .search import Candidate, RSIConfig, score, validation_tasks

__all__ = [
    "GATES",
    "repeated_scores",
    "acceptance_rates",
    "loop_gate_rate",
]

#: Each test at one-sided level `alpha`: does `candidate` beat `current`?
GATES = {
    "naive (mean went up)": lambda cur, cand, alpha, seed: (
        paired_gains(cand, cur).mean() > 0
    ),
    "percentile bootstrap CI": lambda cur, cand, alpha, seed: (
        bootstrap_ci(paired_gains(cand, cur), 1 - 2 * alpha, seed=seed).low > 0
    ),
    "paired t-test": lambda cur, cand, alpha, seed: (
        t_pvalue(paired_gains(cand, cur)) < alpha
    ),
    "sign-flip test (the gate)": lambda cur, cand, alpha, seed: (
        signflip_pvalue(paired_gains(cand, cur), seed=seed) < alpha
    ),
    "Optuna WilcoxonPruner": lambda cur, cand, alpha, seed: wilcoxon_pruner_prunes(
        cand, cur, p_threshold=alpha
    ),
}


def repeated_scores(
    candidate: Candidate, config: RSIConfig, repeats: int, seed: int
) -> np.ndarray:
    """A (repeats, tasks) matrix: the model scored `repeats` times on the loop's
    validation tasks, score i with seed `seed + i` (chapter 5)."""
    tasks = validation_tasks(config.family, config.validation_tasks)
    return np.stack([score(candidate, tasks, config, seed + i) for i in range(repeats)])


def acceptance_rates(
    scores, gains=(0.0,), alpha: float = 0.025, gates=None
) -> dict[str, dict[float, Estimate]]:
    """For every test and every known gain, the share of disjoint pairs (rows 2i and
    2i + 1) in which the test accepts row 2i + 1 plus the gain over row 2i, with a 95%
    Wilson interval (chapter 5)."""
    scores = np.asarray(scores, dtype=np.float64)
    pairs = range(len(scores) // 2)
    return {
        name: {
            float(gain): proportion_ci(
                [
                    bool(test(scores[2 * i], scores[2 * i + 1] + gain, alpha, i))
                    for i in pairs
                ]
            )
            for gain in gains
        }
        for name, test in (gates or GATES).items()
    }


def loop_gate_rate(scores, config: RSIConfig) -> Estimate:
    """The share of disjoint triples (the current model and two identical candidates)
    in which the loop's `decide` accepts a candidate, with a 95% Wilson interval
    (chapter 5)."""
    from .decision import decide

    scores = np.asarray(scores, dtype=np.float64)
    hits = []
    for i in range(len(scores) // 3):
        current, *rest = scores[3 * i : 3 * i + 3]
        proposals = [{"trial": k, "returns": r} for k, r in enumerate(rest)]
        hits.append(decide(current, proposals, config, seed=i)[0] is not None)
    return proportion_ci(hits)

"""Chapter 7's memory study, read back: score matrices, rankings with two-level CIs,
per-trial curves and the in-context test.

Every quantity is a (runs, items) matrix: one row per trained seed, one column per
test item (a test meta-episode of meta-CartPole, or a test task of flip+physics), so
`two_level_ci` resamples seeds and items, and rliable's IQM and probability of
improvement read the same matrices. "Learns in context" is trial 16 against the mean
of trials 1-3 of the same meta-episode, paired, with a two-level CI. Chapter 7.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..report.two_level import two_level_ci, two_level_difference

__all__ = [
    "read_cards",
    "score_matrix",
    "trial_curves",
    "in_context_gain",
    "ranking",
    "steps_to_solve",
]

SOLVED = 15.0  #: a meta-episode return that counts as solved (of 16)


def read_cards(root) -> dict[tuple[str, str], list[dict]]:
    """Every finished unit under ``ROOT/runs``, grouped by (task, core), seeds in
    order (chapter 7)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(Path(root, "runs").glob("*.json")):
        card = json.loads(path.read_text())
        groups.setdefault((card["task"], card["core"]), []).append(card)
    for cards in groups.values():
        cards.sort(key=lambda c: c["seed"])
    return groups


def score_matrix(cards: list[dict], ood: str | None = None) -> np.ndarray:
    """(seeds, items): the return of every test meta-episode (summed over its 16
    trials), or of every flip+physics test task; `ood` picks an out-of-distribution
    set (chapter 7)."""
    if "test_returns" in cards[0]:
        return np.array([c["test_returns"] for c in cards])
    key = (lambda c: c["ood_trials"][ood]) if ood else (lambda c: c["test_trials"])
    return np.array([np.asarray(key(c)).sum(axis=1) for c in cards])


def trial_curves(cards: list[dict], ood: str | None = None) -> list:
    """Mean return of trial k (1..16) with a two-level CI over seeds and test
    meta-episodes (chapter 7)."""
    key = (lambda c: c["ood_trials"][ood]) if ood else (lambda c: c["test_trials"])
    trials = np.array([key(c) for c in cards])  # (seeds, episodes, 16)
    return [two_level_ci(trials[:, :, k]) for k in range(trials.shape[2])]


def in_context_gain(cards: list[dict], ood: str | None = None):
    """Trial 16 minus the mean of trials 1-3 of the same meta-episode, with a
    two-level CI: above 0 means the policy does better once it has seen the task
    (chapter 7)."""
    key = (lambda c: c["ood_trials"][ood]) if ood else (lambda c: c["test_trials"])
    trials = np.array([key(c) for c in cards])
    return two_level_ci(trials[:, :, -1] - trials[:, :, :3].mean(axis=2))


def ranking(groups: dict, task: str) -> list[dict]:
    """The cores on `task`, best mean first: mean with a two-level CI, IQM over seeds
    and each core's difference to the best (chapter 7)."""
    from .rliable_stats import iqm_ci

    rows = []
    for (name, core), cards in groups.items():
        if name == task:
            matrix = score_matrix(cards)
            rows.append({"core": core, "matrix": matrix, "mean": two_level_ci(matrix)})
    rows.sort(key=lambda r: -r["mean"].mean)
    for row in rows:
        row["iqm"] = iqm_ci(row["matrix"])
        row["vs_best"] = two_level_difference(row["matrix"], rows[0]["matrix"])
    return rows


def steps_to_solve(card: dict) -> int | None:
    """The first logged env step at which the training meta-episodes averaged
    `SOLVED`, or None (chapter 7)."""
    for row in card.get("curve", []):
        if row["return"] is not None and row["return"] >= SOLVED:
            return int(row["env_steps"])
    return None

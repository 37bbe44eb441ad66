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
    "trial_array",
    "trial_curves",
    "in_context_gain",
    "ranking",
    "training_curve",
    "steps_to_solve",
    "summarize",
    "read_summary",
]

#: Stateless CartPole counts as solved once the training meta-episodes average 14 of
#: 16 (175 steps a trial) over `WINDOW` consecutive updates.
SOLVED, WINDOW = 14.0, 5


def read_cards(root, variant: str = "") -> dict[tuple[str, str], list[dict]]:
    """Every finished unit of `variant` (``""``: the main grid) under ``ROOT/runs``,
    grouped by (task, core), seeds in order (chapter 7)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(Path(root, "runs").glob("*.json")):
        card = json.loads(path.read_text())
        if card.get("variant", "") == variant:
            groups.setdefault((card["task"], card["core"]), []).append(card)
    for cards in groups.values():
        cards.sort(key=lambda c: c["seed"])
    return groups


def trial_array(cards: list[dict], which: str | None = None) -> np.ndarray:
    """(seeds, episodes, 16) trial returns: the test meta-episodes (`which` None),
    the same played with greedy actions (`GREEDY`), or an out-of-distribution set
    by name (chapter 7)."""
    from .memory_study import GREEDY

    def pick(card):
        if which is None:
            return card["test_trials"]
        return card["greedy_trials"] if which == GREEDY else card["ood_trials"][which]

    return np.array([pick(c) for c in cards])


def score_matrix(cards: list[dict], ood: str | None = None) -> np.ndarray:
    """(seeds, items): the return of every test meta-episode (summed over its 16
    trials), or of every flip+physics test task; `ood` picks another set (see
    `trial_array`; ``FLIP_OOD`` on flip+physics). Chapter 7."""
    if "test_returns" in cards[0]:
        if ood:
            return np.array([c["ood_returns"][ood] for c in cards])
        return np.array([c["test_returns"] for c in cards])
    return trial_array(cards, ood).sum(axis=2)


def trial_curves(cards: list[dict], ood: str | None = None) -> list:
    """Mean return of trial k (1..16) with a two-level CI over seeds and test
    meta-episodes; `ood` as in `trial_array` (chapter 7)."""
    trials = trial_array(cards, ood)
    return [two_level_ci(trials[:, :, k]) for k in range(trials.shape[2])]


def in_context_gain(cards: list[dict], ood: str | None = None):
    """Trial 16 minus the mean of trials 1-3 of the same meta-episode, with a
    two-level CI: above 0 means the policy does better once it has seen the task
    (chapter 7)."""
    trials = trial_array(cards, ood)
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


def training_curve(card: dict) -> dict[str, np.ndarray]:
    """A unit's training log as arrays: ``env_steps``, ``seconds`` and ``return`` (a
    meta-episode's return, or chapter 4's mean episode return on flip+physics; NaN
    before any episode ended). Chapter 7."""
    if "history" in card:  # chapter 4's in-context trainer logs columns
        log = card["history"]
        return {
            "env_steps": np.asarray(log["env_steps"], dtype=float),
            "seconds": np.asarray(log["seconds"], dtype=float),
            "return": np.asarray(log["mean_return"], dtype=float),
        }
    rows = card["curve"]
    column = {k: [r[k] for r in rows] for k in ("env_steps", "seconds", "return")}
    column["return"] = [np.nan if v is None else v for v in column["return"]]
    return {k: np.asarray(v, dtype=float) for k, v in column.items()}


def steps_to_solve(card: dict) -> tuple[int, float] | None:
    """(env steps, seconds) at which the running mean of the training return over
    `WINDOW` updates first reached `SOLVED`, or None (chapter 7)."""
    curve = training_curve(card)
    returns = np.nan_to_num(curve["return"], nan=0.0)
    if returns.size < WINDOW:
        return None
    running = np.convolve(returns, np.ones(WINDOW) / WINDOW, mode="valid")
    hits = np.flatnonzero(running >= SOLVED)
    if not hits.size:
        return None
    at = hits[0] + WINDOW - 1
    return int(curve["env_steps"][at]), float(curve["seconds"][at])


def mean_curve(cards: list[dict], points: int = 100, width: int = 5) -> dict:
    """The seeds' training curves on common grids: the return (a running mean over
    `width` logged updates) averaged over seeds at `points` env steps and at `points`
    wall-clock seconds. Runs log at different steps (episodes differ in length), so
    each is interpolated; a run that stopped early (chapter 4's recipe stops once
    solved) keeps its last value. Chapter 7."""
    curves = [training_curve(c) for c in cards]
    for c in curves:
        returns = np.nan_to_num(c["return"], nan=0.0)
        w = min(width, returns.size)  # a short log is smoothed over all of it
        c["smooth"] = np.convolve(returns, np.ones(w) / w, mode="valid")
        c["x_steps"], c["x_seconds"] = (c[k][w - 1 :] for k in ("env_steps", "seconds"))
    out = {}
    for axis in ("steps", "seconds"):
        grid = np.linspace(0, max(c[f"x_{axis}"][-1] for c in curves), points + 1)[1:]
        seeds = [np.interp(grid, c[f"x_{axis}"], c["smooth"]) for c in curves]
        out[axis] = grid.tolist()
        out[f"return_by_{axis}"] = np.mean(seeds, axis=0).tolist()
    return out


def _estimate(e) -> dict:
    """An `Estimate`, or rliable_stats' dict, as an `Estimate`'s fields."""
    return e.to_dict() if hasattr(e, "to_dict") else {"confidence": 0.95, **e}


def summarize(root) -> dict:
    """Everything chapter 7 reports, from the unit cards under `root`: per task each
    core's mean, IQM and difference to the best (two-level CIs), the best core's
    probability of improvement over it, steps to solve and the mean training curve;
    on meta-CartPole the per-trial curves and in-context gains, in and out of
    distribution; and the variants beside the main grid. Slow (rliable's bootstrap
    over every test meta-episode), so the ``memory`` command writes it once.
    Chapter 7."""
    from .memory_study import OOD, TASKS, VARIANTS
    from .rliable_stats import probability_of_improvement

    groups, out = read_cards(root), {"tasks": {}, "variants": {}}
    for task in TASKS:
        rows = ranking(groups, task)
        best = rows[0]["matrix"]
        for row in rows:
            cards = groups[(task, row["core"])]
            better = row is not rows[0]
            row.update(
                seeds=len(cards),
                improvement=_estimate(probability_of_improvement(best, row["matrix"]))
                if better
                else None,
                solve=[steps_to_solve(c) for c in cards],
                curve=mean_curve(cards),
                seconds=[c["seconds"] for c in cards],
                ood={
                    name: _estimate(two_level_ci(score_matrix(cards, name)))
                    for name in cards[0].get("ood_returns", {})
                },
            )
            for key in ("mean", "iqm", "vs_best"):
                row[key] = _estimate(row[key])
            del row["matrix"]
        out["tasks"][task] = rows
    out["meta_random"] = {
        core: _meta_random(groups[("meta_random", core)], OOD)
        for (task, core) in groups
        if task == "meta_random"
    }
    for variant in VARIANTS:
        plain = read_cards(root, variant)
        out["variants"][variant] = {
            core: {
                **_meta_random(cards, {}),
                "parameters": cards[0]["parameters"],
                "vs_main": _estimate(
                    two_level_difference(
                        score_matrix(cards), score_matrix(groups[(task, core)])
                    )
                ),
            }
            for (task, core), cards in plain.items()
        }
    return out


def _meta_random(cards: list[dict], ood: dict) -> dict:
    """A meta-CartPole group's score, per-trial curve and in-context gains, with
    sampled actions, with greedy ones, and out of distribution."""
    from .memory_study import GREEDY

    return {
        "seeds": len(cards),
        "score": _estimate(two_level_ci(score_matrix(cards))),
        "trials": [_estimate(e) for e in trial_curves(cards)],
        "in_context": _estimate(in_context_gain(cards)),
        "greedy": {
            "score": _estimate(two_level_ci(score_matrix(cards, GREEDY))),
            "trials": [_estimate(e) for e in trial_curves(cards, GREEDY)],
            "in_context": _estimate(in_context_gain(cards, GREEDY)),
        },
        "ood": {
            name: {
                "score": _estimate(two_level_ci(score_matrix(cards, name))),
                "in_context": _estimate(in_context_gain(cards, name)),
            }
            for name in ood
        },
    }


def read_summary(path) -> dict:
    """`summarize`'s JSON with every interval back as an `Estimate` (chapter 7)."""
    from ..report.stats import Estimate

    fields = set(Estimate.__dataclass_fields__)

    def revive(value):
        if isinstance(value, dict):
            if set(value) == fields:
                return Estimate(**value)
            return {k: revive(v) for k, v in value.items()}
        if isinstance(value, list):
            return [revive(v) for v in value]
        return value

    return revive(json.loads(Path(path).read_text()))

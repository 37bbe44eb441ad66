"""What a shipped self-improvement run did, read from its card: the climb and what each
acceptance gained, and the comparison with the same compute spent on plain training.

`climb_rows` lists every cycle (the current model's validation score, the best
candidate's paired gain and p-value, the decision, the kept model's test score);
`acceptance_gains` pairs each accepted model with the one it replaced on the test tasks,
which never decided anything; `same_compute` sets the final models of several runs
beside their same-compute baselines (`ssm_metarl.rsi.baseline`), with two-level CIs
over training seeds and test tasks. Chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import numpy as np

from ..report.stats import Estimate, difference_ci
from ..report.two_level import two_level_ci, two_level_difference

__all__ = [
    "climb_rows",
    "acceptance_gains",
    "candidate_points",
    "same_compute",
    "p_text",
]


def p_text(p: float | None) -> str:
    """A p-value as the tables print it: four decimals, and "< 0.0001" below that
    (the sign-flip test's own resolution is 1 / 20,001). Chapter 5."""
    if p is None:
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _best(cycle: dict) -> dict | None:
    scored = [c for c in cycle["candidates"] if c.get("improvement")]
    return max(scored, key=lambda c: c["improvement"]["mean"], default=None)


def climb_rows(card: dict) -> list[tuple]:
    """One row per cycle: cycle, validation (current), best gain (CI), its p-value,
    decision, test (kept model). Chapter 5."""
    rows = []
    for cycle in card["history"]:
        best = _best(cycle)
        rows.append(
            (
                cycle["cycle"],
                Estimate(**cycle["validation"]),
                Estimate(**best["improvement"]) if best else "none scored",
                p_text(best.get("p_value")) if best else "-",
                "accepted" if cycle["accepted"] is not None else "kept",
                Estimate(**cycle["test"]),
            )
        )
    return rows


def acceptance_gains(card: dict, start_test) -> list[dict]:
    """For every accepted cycle: its paired validation gain (what decided) and the
    paired test gain of the new model over the one it replaced (what it was worth on
    tasks that never decided); `start_test` holds the start model's test returns.
    Chapter 5."""
    gains, before = [], list(start_test)
    for cycle in card["history"]:
        if cycle["accepted"] is not None:
            chosen = next(c for c in cycle["candidates"] if c["status"] == "accepted")
            gains.append(
                {
                    "cycle": cycle["cycle"],
                    "validation_gain": Estimate(**chosen["improvement"]),
                    "p_value": chosen.get("p_value"),
                    "test_gain": difference_ci(
                        cycle["test_returns"], before, paired=True
                    ),
                }
            )
        before = cycle["test_returns"]
    return gains


def candidate_points(card: dict) -> list[tuple[int, float, str]]:
    """(cycle, validation mean, status) of every scored candidate of a run, for the
    figure of the climb. Chapter 5."""
    return [
        (cycle["cycle"], c["validation_mean"], c["status"])
        for cycle in card["history"]
        for c in cycle["candidates"]
        if c.get("validation_mean") is not None
    ]


def same_compute(runs: list[dict], baselines: list[dict]) -> dict:
    """The final models of `runs` (rsi --ship cards) beside their same-compute
    baselines (rsi-baseline cards), on the same test tasks: each method's mean with a
    two-level CI (training seeds, then tasks), their difference, and the compute each
    spent. Chapter 5."""
    loop = np.array([run["history"][-1]["test_returns"] for run in runs])
    plain = np.array([b["test_returns"] for b in baselines])
    return {
        "loop": two_level_ci(loop),
        "baseline": two_level_ci(plain),
        "difference": two_level_difference(loop, plain),
        "loop_env_steps": [run["train_env_steps"] for run in runs],
        "baseline_env_steps": [b["train"]["env_steps"] for b in baselines],
        "loop_minutes": [run["wall_seconds"] / 60 for run in runs],
        "baseline_minutes": [b["train"]["seconds"] / 60 for b in baselines],
        "per_seed": [
            (Estimate(**run["history"][-1]["test"]), Estimate(**b["test"]))
            for run, b in zip(runs, baselines)
        ],
    }

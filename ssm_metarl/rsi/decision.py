"""The acceptance rule and the record of one cycle.

`decide` keeps a candidate only if the confidence interval of its paired improvement
over the current model lies above the margin (Bonferroni-corrected over the cycle's
candidates); `CycleReport` is what one cycle leaves in the run's history. Taught in
chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..report.stats import Estimate, bootstrap_ci
from .search import RSIConfig

__all__ = ["decide", "CycleReport"]


def decide(
    current, candidates: list[dict], config: RSIConfig, seed: int = 0
) -> tuple[int | None, str, list[dict]]:
    """The acceptance rule. `current` holds the current model's per-task validation
    returns; each candidate dict its own (`returns`, same tasks and seeds) or an
    `unsafe` reason.

    Returns (index of the accepted candidate or None, the reason, each candidate's
    verdict). With `rule="ci"` the best candidate (largest mean paired improvement) is
    accepted only if the lower end of the CI of that improvement exceeds `margin`. With
    several candidates the confidence is raised to 1 - (1 - confidence)/K (Bonferroni),
    because picking the best of K noisy scores favours luck. `rule="naive"` accepts any
    positive mean. Defined in chapter 5.
    """
    current = np.asarray(current, dtype=np.float64)
    safe = [
        i
        for i, c in enumerate(candidates)
        if c.get("returns") is not None and not c.get("unsafe")
    ]
    level = 1 - (1 - config.confidence) / max(1, len(safe))
    verdicts = []
    for i, c in enumerate(candidates):
        if i not in safe:
            verdicts.append(
                {
                    "status": "unsafe" if c.get("unsafe") else "failed",
                    "reason": c.get("unsafe") or c.get("reason") or "no result",
                }
            )
            continue
        gain = bootstrap_ci(
            np.asarray(c["returns"]) - current, confidence=level, seed=seed
        )
        verdicts.append(
            {"status": "scored", "improvement": gain.to_dict(), "reason": ""}
        )
    if not safe:
        return None, "no candidate was safe to score", verdicts
    best = max(safe, key=lambda i: verdicts[i]["improvement"]["mean"])
    gain = Estimate(**verdicts[best]["improvement"])
    passed = (
        gain.mean > config.margin
        if config.rule == "naive"
        else gain.low > config.margin
    )
    for i in safe:
        verdicts[i]["status"] = "accepted" if (i == best and passed) else "rejected"
        verdicts[i]["reason"] = ("best, and " if i == best else "not the best; ") + (
            f"improvement {Estimate(**verdicts[i]['improvement'])} "
            + (
                "(mean above margin)"
                if config.rule == "naive"
                else f"({100 * level:.1f}% CI)"
            )
        )
    if passed:
        return (
            best,
            f"accepted trial {candidates[best].get('trial')}: improvement {gain} lies "
            f"above {config.margin:g}",
            verdicts,
        )
    what = "mean" if config.rule == "naive" else f"{100 * level:.1f}% CI"
    return (
        None,
        f"kept the current model: the best improvement {gain} ({what}) does not lie "
        f"above {config.margin:g}",
        verdicts,
    )


@dataclass
class CycleReport:
    """One cycle: the current model's scores, every proposal with its verdict, the
    decision and why, and the test score of the model kept (recorded, never used to
    decide). Chapter 5.
    """

    cycle: int
    # the current model's Estimate on the validation tasks, before the decision
    validation: dict
    # trial, params, train info, validation mean, improvement Estimate, status, reason
    candidates: list[dict]
    accepted: int | None  # the accepted trial's number, or None
    reason: str
    test: dict  # Estimate of the model kept after this cycle, on the test tasks
    test_returns: list[float]
    model_config: dict
    inner_lr: float
    seconds: float
    # no candidate could be scored safely (all unsafe or failed)
    emergency: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CycleReport":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

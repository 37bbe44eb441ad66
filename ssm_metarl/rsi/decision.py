"""The acceptance rule and the record of one cycle.

`decide` keeps a candidate only if its paired improvement over the current model is
significant by the sign-flip test (Bonferroni-corrected over the cycle's candidates;
`ssm_metarl.rsi.gate`); `CycleReport` is what one cycle leaves in the run's history.
Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..report.stats import Estimate, bootstrap_ci
from .gate import paired_gains, signflip_pvalue
from .search import RSIConfig

__all__ = ["decide", "CycleReport"]


def decide(
    current, candidates: list[dict], config: RSIConfig, seed: int = 0
) -> tuple[int | None, str, list[dict]]:
    """The acceptance rule. `current` holds the current model's per-task validation
    returns; each candidate dict its own (`returns`, same tasks and seeds) or an
    `unsafe` reason.

    Returns (index of the accepted candidate or None, the reason, each candidate's
    verdict). Only the best candidate (largest mean paired improvement) can be
    accepted. With `rule="signflip"` it is accepted if the sign-flip test's one-sided
    p-value of its gain above `margin` is below (1 - confidence) / 2; `rule="ci"`
    accepts if the lower end of the bootstrap CI of the gain exceeds `margin`. With K
    candidates the error is split K ways (Bonferroni), because the best of K noisy
    scores is lucky on purpose. `rule="naive"` accepts any mean above `margin`. Every
    verdict carries the gain's bootstrap CI at the same level. Defined in chapter 5.
    """
    current = np.asarray(current, dtype=np.float64)
    safe = [
        i
        for i, c in enumerate(candidates)
        if c.get("returns") is not None and not c.get("unsafe")
    ]
    level = 1 - (1 - config.confidence) / max(1, len(safe))
    alpha = (1 - level) / 2  # one-sided: only a gain is accepted
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
        gains = paired_gains(c["returns"], current)
        verdicts.append(
            {
                "status": "scored",
                "improvement": bootstrap_ci(
                    gains, confidence=level, seed=seed
                ).to_dict(),
                "p_value": signflip_pvalue(gains - config.margin, seed=seed),
                "reason": "",
            }
        )
    if not safe:
        return None, "no candidate was safe to score", verdicts
    best = max(safe, key=lambda i: verdicts[i]["improvement"]["mean"])
    gain, p = Estimate(**verdicts[best]["improvement"]), verdicts[best]["p_value"]
    passed, evidence = {
        "naive": (gain.mean > config.margin, "mean above margin"),
        "ci": (gain.low > config.margin, f"{100 * level:.1f}% CI"),
        "signflip": (p < alpha, f"sign-flip p = {p:.4f}, level {alpha:.4f}"),
    }[config.rule]
    for i in safe:
        verdicts[i]["status"] = "accepted" if (i == best and passed) else "rejected"
        verdicts[i]["reason"] = ("best, and " if i == best else "not the best; ") + (
            f"improvement {Estimate(**verdicts[i]['improvement'])} "
            f"({100 * level:.1f}% CI, sign-flip p = {verdicts[i]['p_value']:.4f})"
        )
    if passed:
        return (
            best,
            f"accepted trial {candidates[best].get('trial')}: improvement {gain} lies "
            f"above {config.margin:g} ({evidence})",
            verdicts,
        )
    return (
        None,
        f"kept the current model: the best improvement {gain} does not lie above "
        f"{config.margin:g} ({evidence})",
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

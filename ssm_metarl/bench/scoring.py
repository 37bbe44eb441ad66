"""How chapter 6 scores an agent: returns per task or per episode, a table row with its
CI, and the random policy.

Both protocols (:mod:`~ssm_metarl.bench.card_protocol`,
:mod:`~ssm_metarl.bench.strong_protocol`) and the SB3 peers on test tasks play
episodes with ``collect`` and report them through ``score_row``, so every row of the
chapter's tables is computed the same way. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..cartpole.rollout import collect
from ..models.ssm import StateSpaceModel
from ..report.stats import bootstrap_ci

__all__ = ["random_model", "score_row", "mean_returns", "episode_returns"]


def random_model() -> StateSpaceModel:
    """The card's SSM with every weight zero: equal logits, so sampled actions are
    uniform (chapter 6)."""
    model = StateSpaceModel(32, 4, 4, 64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def score_row(name: str, returns, reported: str = "–", **extra) -> dict:
    """A row of chapter 6's tables: the returns, their mean and standard deviation, and
    the mean's 95% bootstrap CI, beside the value the card reported (if any)."""
    returns = np.asarray(returns, dtype=np.float64).ravel()
    return {
        "name": name,
        "reported": reported,
        "returns": returns.tolist(),
        "std": {
            "mean": float(returns.mean()),
            "std": float(returns.std(ddof=1)) if returns.size > 1 else 0.0,
        },
        "ci": bootstrap_ci(returns).to_dict(),
        **extra,
    }


def mean_returns(
    model_or_policy, tasks, episodes: int, seed: int, greedy: bool
) -> np.ndarray:
    """Per-task mean return over `episodes` episodes: (len(tasks),). Chapter 6."""
    traj = collect(model_or_policy, tasks, episodes, seed=seed, greedy=greedy)
    return traj.returns.double().numpy().reshape(len(tasks), episodes).mean(1)


def episode_returns(
    model_or_policy, task, episodes: int, seed: int, greedy: bool
) -> np.ndarray:
    """The return of each of `episodes` episodes on one task: (episodes,). Chapter 6."""
    return (
        collect(model_or_policy, [task], episodes, seed=seed, greedy=greedy)
        .returns.double()
        .numpy()
    )

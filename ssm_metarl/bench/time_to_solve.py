"""Time to solve CartPole-v1: our PPO's runs, and SB3's PPO time over ours (chapter 6).

``our_ppo_cartpole`` trains chapter 2's PPO on the card's SSM over several seeds with
the solve check the SB3 peers use (:mod:`ssm_metarl.bench.peers`): a greedy mean return
>= 475 over 100 real episodes, the clock including every evaluation. The benchmark runs
it with the strong protocol (its ``our_ppo`` section). ``ppo_time_to_solve`` compares
the two sides' seconds to solve, the last row of chapter 6's speed table. Taught in
chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..cartpole.tasks import CartPoleTask
from ..models.ssm import StateSpaceModel
from ..rl.configs import PPOConfig
from ..rl.loops import train_ppo

__all__ = ["our_ppo_cartpole", "ppo_time_to_solve"]


def our_ppo_cartpole(seeds=range(5)) -> dict:
    """Chapter 2's PPO on the card's SSM, CartPole-v1, solved = greedy mean >= 475 over
    100 real episodes.

    The same solve check as the SB3 peers; the clock includes every evaluation.
    Chapter 6.
    """
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = StateSpaceModel(32, 4, 4, 64)
        result = train_ppo(
            model, [CartPoleTask()], PPOConfig(max_seconds=60.0), seed=seed
        )
        h = result.history
        runs.append(
            {
                "algorithm": "our_ppo",
                "label": "our PPO (card's SSM)",
                "seed": seed,
                "solved": result.solved,
                "solved_at_steps": result.solved_at_steps,
                "solved_at_seconds": result.solved_at_seconds,
                "curve_steps": list(h["env_steps"]),
                "curve_returns": [float(r) for r in h["mean_return"]],
                "final_mean": (result.final_eval or {}).get("mean"),
            }
        )
    solved = [r for r in runs if r["solved"]]
    summary = {
        "seeds": len(runs),
        "solved": len(solved),
        "median_solve_steps": float(np.median([r["solved_at_steps"] for r in solved]))
        if solved
        else None,
        "median_solve_seconds": float(
            np.median([r["solved_at_seconds"] for r in solved])
        )
        if solved
        else None,
    }
    return {
        "what": "PPOConfig() defaults, 60 s budget, one torch thread",
        "summary": summary,
        "runs": runs,
    }


def ppo_time_to_solve(
    results: dict, n_resamples: int = 2000, seed: int = 0
) -> dict | None:
    """SB3 PPO's seconds to solve CartPole-v1 over ours: ratio of medians over solved
    seeds (chapter 6).

    The CI resamples each side's solved seeds independently (a percentile bootstrap);
    None when either side is missing or never solved.
    """
    ours = [
        r["solved_at_seconds"]
        for r in (results.get("our_ppo") or {}).get("runs", [])
        if r.get("solved")
    ]
    theirs = [
        r["solved_at_seconds"]
        for r in (results.get("peers") or {}).get("runs", [])
        if r["algorithm"] == "sb3_ppo" and r.get("solved")
    ]
    if not ours or not theirs:
        return None
    rng = np.random.default_rng(seed)
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    boot = [
        np.median(rng.choice(b, b.size)) / np.median(rng.choice(a, a.size))
        for _ in range(n_resamples)
    ]
    low, high = np.quantile(boot, [0.025, 0.975])
    runs = results.get("merged") or {}
    same = runs.get("peers") == runs.get("strong")  # both None: this run measured both
    return {
        "name": "time to solve CartPole-v1, SB3 PPO over our PPO (median seconds)",
        # our_ppo comes with the strong protocol, SB3 with peers: say when two runs
        # made them
        "same_run": same,
        "ratio": {
            "mean": float(np.median(b) / np.median(a)),
            "low": float(low),
            "high": float(high),
            "n": int(a.size + b.size),
        },
        "ci": "bootstrap over seeds",
        "ours_seconds": ours,
        "sb3_seconds": theirs,
    }

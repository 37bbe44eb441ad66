"""PPO from scratch against one adaptation step, goal by goal (chapter 4).

How many environment steps does a fresh policy need, trained by chapter 2's PPO on one
goal, to reach the return that MAML's one step reaches there? The target is the mean
over the replicated MAML models of their return after one step on that goal; MAML's
cost is its 10 support episodes. PPO is scored like MAML (10 fresh episodes, sampled
actions) every `CHECK_EVERY` iterations, and the steps it had played when it first
reached the target are its cost; a run that never does is censored at `MAX_STEPS`.
Four goals of every distance band, three PPO seeds each. Taught in chapter 4
(`book/04_test_time_adaptation.md`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["GOALS_PER_BAND", "PPO_SEEDS", "MAX_STEPS", "scratch_goals", "ppo_to_match"]

#: Goals of each distance band raced, and PPO seeds per goal.
GOALS_PER_BAND, PPO_SEEDS = 4, (0, 1, 2)
#: PPO's budget of environment steps; a run that has not matched by then is censored.
MAX_STEPS = 100_000
#: PPO iterations (8 episodes each) between two scorings.
CHECK_EVERY = 2


def scratch_goals(family: str = "goal_sharp") -> list[int]:
    """Positions in the family's test set of the goals raced: the first
    `GOALS_PER_BAND` of each band (chapter 4)."""
    from ..cartpole.task_sets import BANDS, task_sets

    test = task_sets(family)["test"]
    return [int(i) for band in BANDS for i in test.indices("band", band)[:4]]


def ppo_to_match(family: str, index: int, seed: int, target: float, root) -> dict:
    """Train PPO from scratch on test task `index` until its score reaches `target`;
    cached in `root/measurements/scratch_FAMILY_INDEX_SEED.json` (chapter 4)."""
    import torch

    from ..cartpole.task_sets import task_sets
    from ..io.atomic import save_json
    from ..meta.evaluation import TEST_SEED
    from ..models.ssm import StateSpaceModel
    from ..rl.configs import PPOConfig
    from ..rl.loops import train_ppo
    from .measure import per_task_returns
    from .plan import MODEL

    path = Path(root) / "measurements" / f"scratch_{family}_{index}_{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    task = task_sets(family)["test"].tasks[index]

    def score(policy) -> tuple[float, dict]:
        value = float(per_task_returns(policy, [task], 10, seed=TEST_SEED + 1)[0])
        return value, {"return": value}

    torch.manual_seed(seed)
    model = StateSpaceModel(**MODEL)
    config = PPOConfig(
        max_iters=10**6,
        max_env_steps=MAX_STEPS,
        max_seconds=3600.0,
        target_return=target,
        validate_every=CHECK_EVERY,
    )
    result = train_ppo(model, [task], config, seed=seed, validate=score)
    returns = result.validation.get("return", [])
    out = {
        "family": family,
        "index": index,
        "goal": task.goal,
        "seed": seed,
        "target": target,
        "matched": result.solved,
        "steps": result.solved_at_steps if result.solved else None,
        "steps_played": int(result.history["env_steps"][-1]),
        "best_return": float(np.max(returns)) if returns else None,
    }
    save_json(path, out)
    return out

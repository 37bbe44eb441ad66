"""Chapter 6's SB3 peers on test tasks (the benchmark's ``family`` section): PPO and
DQN trained through the Gymnasium env of each task, beside our PPO from scratch.

``sb3_on_task`` trains Stable-Baselines3's PPO or DQN with RL Zoo's CartPole-v1
settings (:mod:`ssm_metarl.bench.peers`) on one task through ``make_env(task)``;
``family_section`` runs it and our PPO from scratch (the strong protocol's PPO row) on
the first test tasks of a family, at the same budget, scored the same way. Needs
the ``bench`` extra. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..cartpole.envs import make_env
from ..cartpole.tasks import get_family
from ..meta.evaluation import TEST_SEED, test_tasks
from ..report.stats import bootstrap_ci
from ..report.timing import torch_threads
from .peers import ZOO, sb3_model
from .scoring import mean_returns
from .strong_protocol import ppo_from_scratch

__all__ = ["sb3_on_task", "family_section"]


def _gym_returns(env, act, episodes: int, seed: int) -> np.ndarray:
    out = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        total, done = 0.0, False
        while not done:
            obs, reward, term, trunc, _ = env.step(int(act(obs)))
            total += float(reward)
            done = term or trunc
        out.append(total)
    return np.asarray(out)


def sb3_on_task(
    algo: str, task, budget: int, seed: int = 0, episodes: int = 10, eval_seed: int = 0
) -> dict:
    """Train SB3's `algo` with RL Zoo's CartPole-v1 settings on one task through
    ``make_env(task)``.

    Scored like the strong protocol: mean return of `episodes` sampled episodes.
    Chapter 6.
    """
    from stable_baselines3.common.env_util import make_vec_env

    zoo = dict(ZOO[algo])
    start = time.perf_counter()
    model = sb3_model(
        algo,
        seed,
        zoo,
        env=make_vec_env(lambda: make_env(task), n_envs=zoo["n_envs"], seed=seed),
    )
    model.learn(total_timesteps=budget)
    env = make_env(task)
    act = lambda obs: model.predict(obs, deterministic=False)[0]
    returns = _gym_returns(env, act, episodes, eval_seed)
    env.close()
    return {
        "algorithm": f"sb3_{algo}",
        "seed": seed,
        "budget": budget,
        "final_return": float(returns.mean()),
        "seconds": round(time.perf_counter() - start, 2),
    }


def family_section(
    family: str = "goal",
    n_tasks: int = 8,
    budget: int = 10_000,
    algos=("ppo", "dqn"),
    seed: int = 0,
    episodes: int = 10,
    progress=None,
) -> dict:
    """SB3 and our PPO from scratch on the first `n_tasks` of `family`'s 48 test
    tasks (chapter 6).

    Each learner trains once per task for `budget` env steps (the strong protocol's PPO
    row) and is scored on `episodes` sampled episodes; the CI is over tasks.
    """
    tasks = test_tasks(get_family(family), 48)[:n_tasks]
    say = progress or (lambda msg: None)
    runs = []
    with torch_threads(1):
        for i, task in enumerate(tasks):
            eval_seed = TEST_SEED + 1000 * seed + 1 + i
            run = ppo_from_scratch(task, budget, seed + i)
            final = float(
                mean_returns(run.pop("model"), [task], episodes, eval_seed, False)[0]
            )
            runs.append(
                {
                    "algorithm": "our_ppo",
                    "task": i,
                    "final_return": final,
                    "seconds": round(run["seconds"], 2),
                }
            )
            say(f"task {i}: our_ppo {final:.1f}")
            for algo in algos:
                with torch.random.fork_rng():
                    r = sb3_on_task(algo, task, budget, seed + i, episodes, eval_seed)
                runs.append({**r, "task": i})
                say(f"task {i}: sb3_{algo} {r['final_return']:.1f} ({r['seconds']} s)")
    names = {
        "our_ppo": "our PPO from scratch (card's SSM)",
        "sb3_ppo": "SB3 PPO (RL Zoo CartPole settings)",
        "sb3_dqn": "SB3 DQN (RL Zoo CartPole settings)",
    }
    rows = []
    for algo in ["our_ppo"] + [f"sb3_{a}" for a in algos]:
        mine = [r for r in runs if r["algorithm"] == algo]
        returns = [r["final_return"] for r in mine]
        rows.append(
            {
                "name": names[algo],
                "algorithm": algo,
                "returns": returns,
                "ci": bootstrap_ci(returns).to_dict(),
                "seconds_per_task": float(np.mean([r["seconds"] for r in mine])),
            }
        )
    return {
        "what": (
            f"first {n_tasks} of 48 test '{family}' tasks, {budget:,} env steps "
            f"per task, one training seed per task, {episodes} sampled episodes; "
            "CI over tasks"
        ),
        "family": family,
        "n_tasks": n_tasks,
        "budget": budget,
        "rows": rows,
        "runs": runs,
    }

"""Peers for chapter 6's benchmark: Stable-Baselines3's PPO and DQN with RL Zoo's
CartPole-v1 settings.

Optional: needs the ``bench`` extra (``pip install -e .[bench]``); SB3 is imported only
when a peer runs. Each run trains on real Gymnasium ``CartPole-v1`` and is scored the
way chapter 2 scores our PPO: solved means a greedy mean return >= 475 over 100 real
episodes, and the clock includes every evaluation. The same peers on test tasks
of a family are :mod:`ssm_metarl.bench.peers_tasks`. Taught in chapter 6
(``06_benchmarks``).
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

from ..report.stats import bootstrap_ci
from ..report.timing import torch_threads

__all__ = ["ZOO", "ZOO_SOURCE", "greedy_returns", "sb3_model", "run_sb3", "run_peers"]

#: RL Zoo's tuned CartPole-v1 settings (DLR-RM/rl-baselines3-zoo, hyperparams/ppo.yml
#: and dqn.yml at commit 22e3ff2), read and restated; ``lin_x`` means a rate falling
#: linearly from x to 0 over the run.
ZOO = {
    "ppo": {
        "n_envs": 8,
        "n_timesteps": 100_000,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    "dqn": {
        "n_envs": 1,
        "n_timesteps": 50_000,
        "learning_rate": 2.3e-3,
        "batch_size": 64,
        "buffer_size": 100_000,
        "learning_starts": 1000,
        "gamma": 0.99,
        "target_update_interval": 10,
        "train_freq": 256,
        "gradient_steps": 128,
        "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04,
        "net_arch": [256, 256],
    },
}
ZOO_SOURCE = (
    "github.com/DLR-RM/rl-baselines3-zoo @ 22e3ff2, hyperparams/{ppo,dqn}.yml, "
    "CartPole-v1"
)


def greedy_returns(predict, episodes: int = 100, seed: int = 0) -> np.ndarray:
    """Returns of `episodes` greedy episodes of real ``CartPole-v1``, played side by
    side.

    `predict(obs (n, 4)) -> actions (n,)`. Each environment plays exactly one episode
    (its first); the vector env's auto-reset episodes are ignored. Defined in chapter 6.
    """
    envs = gym.make_vec("CartPole-v1", num_envs=episodes, vectorization_mode="sync")
    try:
        obs, _ = envs.reset(seed=seed)
        total, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
        while not done.all():
            obs, reward, term, trunc, _ = envs.step(np.asarray(predict(obs)))
            total += np.where(done, 0.0, reward)
            done |= term | trunc
        return total
    finally:
        envs.close()


def _lin(value):
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def sb3_model(algo: str, seed: int, zoo: dict, env=None):
    """An untrained SB3 ``PPO`` or ``DQN`` (`algo`) with the settings `zoo` (an entry of
    ``ZOO``), on `env` or on ``zoo["n_envs"]`` seeded copies of real ``CartPole-v1``.
    Chapter 6."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = (
        env
        if env is not None
        else make_vec_env("CartPole-v1", n_envs=zoo["n_envs"], seed=seed)
    )
    if algo == "ppo":
        keys = ("n_steps", "batch_size", "gae_lambda", "gamma", "n_epochs", "ent_coef")
        return PPO(
            "MlpPolicy",
            env,
            seed=seed,
            device="cpu",
            learning_rate=_lin(zoo["learning_rate"]),
            clip_range=_lin(zoo["clip_range"]),
            **{k: zoo[k] for k in keys},
        )
    keys = (
        "learning_rate",
        "batch_size",
        "buffer_size",
        "learning_starts",
        "gamma",
        "target_update_interval",
        "train_freq",
        "gradient_steps",
        "exploration_fraction",
        "exploration_final_eps",
    )
    return DQN(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        policy_kwargs={"net_arch": zoo["net_arch"]},
        **{k: zoo[k] for k in keys},
    )


def run_sb3(
    algo: str,
    seed: int = 0,
    timesteps: int | None = None,
    eval_every: int = 5000,
    target: float = 475.0,
) -> dict:
    """Train SB3's `algo` ("ppo" or "dqn") with RL Zoo's settings and record when it
    solves CartPole-v1.

    Every `eval_every` env steps: 10 greedy episodes (the curve); if their mean reaches
    `target`, 100 more decide "solved" (first time only). After `timesteps` (default:
    the Zoo's) the final score is a 100-episode greedy mean. Defined in chapter 6
    (``06_benchmarks``).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    zoo = ZOO[algo]
    timesteps = int(timesteps or zoo["n_timesteps"])
    run = {
        "algorithm": f"sb3_{algo}",
        "seed": seed,
        "timesteps": timesteps,
        "curve_steps": [],
        "curve_returns": [],
        "solved_at_steps": None,
        "solved_at_seconds": None,
    }
    start = time.perf_counter()
    model = sb3_model(algo, seed, zoo)
    predict = lambda obs: model.predict(obs, deterministic=True)[0]

    class Check(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next = eval_every

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += eval_every
                quick = float(
                    greedy_returns(predict, 10, seed=seed + self.num_timesteps).mean()
                )
                run["curve_steps"].append(int(self.num_timesteps))
                run["curve_returns"].append(quick)
                if quick >= target and run["solved_at_steps"] is None:
                    if (
                        greedy_returns(predict, 100, seed=10_000 + seed).mean()
                        >= target
                    ):
                        run["solved_at_steps"] = int(self.num_timesteps)
                        run["solved_at_seconds"] = round(time.perf_counter() - start, 2)
            return True

    model.learn(total_timesteps=timesteps, callback=Check())
    final = greedy_returns(predict, 100, seed=20_000 + seed)
    run.update(
        train_seconds=round(time.perf_counter() - start, 2),
        final_mean=float(final.mean()),
        final_returns=final.tolist(),
        solved=run["solved_at_steps"] is not None,
    )
    return run


def run_peers(
    seeds=range(5), algos=("ppo", "dqn"), timesteps: dict | None = None, progress=None
) -> dict:
    """SB3 PPO and DQN over `seeds` on one torch thread, with a summary per algorithm
    (chapter 6)."""
    timesteps = timesteps or {}
    runs = []
    with torch_threads(1):
        for seed in seeds:
            for algo in algos:  # alternate, so load bursts hit both
                with torch.random.fork_rng():
                    runs.append(run_sb3(algo, seed, timesteps.get(algo)))
                if progress is not None:
                    progress(runs[-1])
    summary = {}
    for algo in algos:
        mine = [r for r in runs if r["algorithm"] == f"sb3_{algo}"]
        solved = [r for r in mine if r["solved"]]
        summary[f"sb3_{algo}"] = {
            "seeds": len(mine),
            "solved": len(solved),
            "timesteps": mine[0]["timesteps"],
            "final_return": bootstrap_ci([r["final_mean"] for r in mine]).to_dict(),
            "median_solve_steps": float(
                np.median([r["solved_at_steps"] for r in solved])
            )
            if solved
            else None,
            "median_solve_seconds": float(
                np.median([r["solved_at_seconds"] for r in solved])
            )
            if solved
            else None,
            "train_seconds": bootstrap_ci([r["train_seconds"] for r in mine]).to_dict(),
        }
    import stable_baselines3

    return {
        "library": f"stable-baselines3 {stable_baselines3.__version__}",
        "hyperparameters": ZOO_SOURCE,
        "zoo": {a: ZOO[a] for a in algos},
        "torch_threads": 1,
        "summary": summary,
        "runs": runs,
    }

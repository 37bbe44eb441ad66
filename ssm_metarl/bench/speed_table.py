"""Chapter 6's speed figures and SB3 on held-out tasks: two sections of
``python -m ssm_metarl benchmark``.

``speed_section`` calls the ``bench`` speed benchmarks (:mod:`ssm_metarl.bench.speed`)
with small sizes, in one run: every figure is a ratio of variants timed in turns.
``ppo_time_to_solve`` compares our PPO with SB3's PPO from the benchmark's ``our_ppo``
and ``peers`` sections. ``family_section`` trains SB3's PPO (and DQN) through the
registered Gymnasium env on held-out tasks of a family, beside our PPO from scratch on
the same tasks and budget. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import time
from argparse import Namespace

import numpy as np
import torch

from ..report.stats import bootstrap_ci
from ..report.timing import torch_threads

__all__ = [
    "SPEED_SIZES",
    "speed_section",
    "ppo_time_to_solve",
    "sb3_on_task",
    "family_section",
]

#: The sizes of the speed section (the full ``bench`` commands use larger ones;
#: chapters 1-3 show them).
SPEED_SIZES = {
    "rollout": {"naive_steps": 1000, "rounds": 5, "policies": 2},
    "maml": {"episodes": 4, "repeats": 5, "orders": (False, True)},
    "ssm": {"lengths": (2048,), "state_dims": (16,), "rounds": 5},
}


def _est(d: dict) -> dict:
    return {k: d[k] for k in ("mean", "low", "high", "n") if k in d}


def speed_section(seed: int = 0, sizes: dict | None = None, progress=None) -> dict:
    """The issue's speed figures as ratios measured side by side in this run, on one
    torch thread (chapter 6).

    Rows: rollout throughput (``collect`` on 1,024 envs vs the naive loop, per policy),
    batched vs looped meta-gradient, the SSM's scan and FFT vs the loop and the FFT's
    floor vs the FFT. Each row: ``ratio`` (mean, and a 95% CI over interleaved rounds
    when the bench function provides one) and the raw bench output under ``raw``.
    """
    from .speed import bench_maml, bench_rollout, bench_ssm

    sizes = {k: {**v, **((sizes or {}).get(k, {}))} for k, v in SPEED_SIZES.items()}
    say = progress or (lambda msg: None)
    rows, raw, seconds = [], {}, {}

    def run(name: str, bench, **args) -> list[dict]:
        """Run one `bench` function, keep its JSON and its wall time; return its
        rows."""
        start = time.perf_counter()
        raw[name] = bench(Namespace(seed=seed, **args, **sizes[name]))
        seconds[name] = round(time.perf_counter() - start, 1)
        say(f"speed: {name} {seconds[name]} s")
        return raw[name]["rows"]

    with torch_threads(1):
        for r in run("rollout", bench_rollout, threads=[1]):
            rows.append(
                {
                    "name": (
                        "rollout throughput, collect() on 1,024 envs vs naive loop "
                        f"({r['policy']} SSM)"
                    ),
                    "ratio": _est(r["ratio"]),
                    "ci": "over rounds",
                }
            )
        for r in run("maml", bench_maml):
            rows.append(
                {
                    "name": f"meta-gradient, looped vs batched ({r['order']} order)",
                    "ratio": _est(r["loop_over_batched_ci"]),
                    "ci": "over rounds",
                }
            )
        for r in run("ssm", bench_ssm, threads=[1]):
            where = f"L={r['length']}, N={r['state_dim']}"
            for key, label in (
                ("scan", "SSM chunked scan vs loop"),
                ("fft", "SSM FFT vs loop"),
                ("fft_floor_over_fft", "SSM FFT's time over its floor's (its 3 FFTs)"),
            ):
                rows.append(
                    {
                        "name": f"{label} ({where})",
                        "ratio": _est(r["ratios"][key]),
                        "ci": "over rounds",
                    }
                )
    return {
        "what": (
            "how many times faster, variants timed in turns in one run, one torch "
            "thread; CI: 95% bootstrap over rounds"
        ),
        "sizes": {
            k: {a: list(b) if isinstance(b, tuple) else b for a, b in v.items()}
            for k, v in sizes.items()
        },
        "rows": rows,
        "seconds": seconds,
        "raw": raw,
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


def _episode_returns(env, act, episodes: int, seed: int) -> np.ndarray:
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

    from ..cartpole.envs import make_env
    from .peers import ZOO, _make

    zoo = dict(ZOO[algo])
    start = time.perf_counter()
    model = _make(
        algo,
        seed,
        zoo,
        env=make_vec_env(lambda: make_env(task), n_envs=zoo["n_envs"], seed=seed),
    )
    model.learn(total_timesteps=budget)
    env = make_env(task)
    act = lambda obs: model.predict(obs, deterministic=False)[0]
    returns = _episode_returns(env, act, episodes, eval_seed)
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
    """SB3 and our PPO from scratch on the first `n_tasks` of `family`'s 48 held-out
    tasks (chapter 6).

    Each learner trains once per task for `budget` env steps (the strong protocol's PPO
    row) and is scored on `episodes` sampled episodes; the CI is over tasks.
    """
    from ..cartpole.tasks import get_family
    from ..meta.evaluation import TEST_SEED, held_out_tasks
    from .protocols import _play, _ppo_from_scratch

    tasks = held_out_tasks(get_family(family), 48)[:n_tasks]
    say = progress or (lambda msg: None)
    runs = []
    with torch_threads(1):
        for i, task in enumerate(tasks):
            eval_seed = TEST_SEED + 1000 * seed + 1 + i
            run = _ppo_from_scratch(task, budget, seed + i)
            final = float(
                _play(run.pop("model"), [task], episodes, eval_seed, False)[0]
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
            f"first {n_tasks} of 48 held-out '{family}' tasks, {budget:,} env steps "
            f"per task, one training seed per task, {episodes} sampled episodes; "
            "CI over tasks"
        ),
        "family": family,
        "n_tasks": n_tasks,
        "budget": budget,
        "rows": rows,
        "runs": runs,
    }

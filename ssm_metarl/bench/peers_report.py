"""What chapter 6 reads from the peers run: tables with CIs over training seeds.

``cartpole_rows`` gives each CartPole-v1 agent's solved count, median steps and
training seconds to solve and final return; ``solve_ratio`` one agent's median over
another's. An unsolved seed counts as never solving (infinite), so a median with half
the seeds unsolved is "not reached". ``held_out_rows`` sets SB3 from scratch beside
MAML's one adaptation step on the same held-out tasks, ``memory_rows`` the memory
learners on flip+physics; ``curve_quantiles`` the median and quartiles of the
learning curves. Chapter 6.
"""

from __future__ import annotations

import numpy as np

from ..report.stats import Estimate, bootstrap_ci, difference_ci
from ..report.two_level import two_level_ci

__all__ = [
    "LABELS",
    "runs_of",
    "median_ci",
    "cartpole_rows",
    "solve_ratio",
    "curve_quantiles",
    "held_out_rows",
    "memory_rows",
    "peers_summary",
]

#: Readable names of the peers run's agents.
LABELS = {
    "our_ppo": "our PPO (card's SSM)",
    "sb3_ppo": "SB3 PPO (RL Zoo)",
    "sb3_dqn": "SB3 DQN (RL Zoo)",
    "sb3_recurrent_ppo": "SB3 recurrent PPO (RL Zoo)",
    "in_context_best": "in-context recipe, best validated",
    "in_context_last": "in-context recipe, last weights",
    "in_context_shipped": "in-context, shipped models",
}


def runs_of(peers: dict, kind: str, agent: str | None = None) -> list[dict]:
    """The runs of one comparison (`kind`), of one agent if named, by seed.
    Chapter 6."""
    runs = [
        r
        for r in peers["runs"]
        if r["kind"] == kind and (agent is None or r["agent"] == agent)
    ]
    return sorted(runs, key=lambda r: (r.get("budget", 0), r["seed"]))


def median_ci(values, n_resamples: int = 10_000, seed: int = 0) -> Estimate:
    """Median with a percentile-bootstrap 95% CI; `inf` (never solved) is allowed
    and may be the median or a bound. Chapter 6."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boot = np.median(x[rng.integers(0, x.size, (n_resamples, x.size))], axis=1)
    low, high = np.quantile(boot, [0.025, 0.975], method="inverted_cdf")
    return Estimate(float(np.median(x)), float(low), float(high), int(x.size))


def _solve_values(runs: list[dict], key: str) -> np.ndarray:
    return np.array([r[key] if r["solved"] else np.inf for r in runs], dtype=np.float64)


def cartpole_rows(peers: dict) -> list[dict]:
    """Per CartPole-v1 agent: seeds solved, median env steps and training seconds to
    solve (CI over seeds), final greedy return over 100 episodes (mean, CI over
    seeds). Chapter 6."""
    rows = []
    for agent in ("our_ppo", "sb3_ppo", "sb3_dqn"):
        runs = runs_of(peers, "cartpole", agent)
        if not runs:
            continue
        rows.append(
            {
                "agent": agent,
                "label": LABELS[agent],
                "seeds": len(runs),
                "solved": sum(r["solved"] for r in runs),
                "budget": runs[0]["budget"],
                "steps": median_ci(_solve_values(runs, "solved_at_steps")),
                "seconds": median_ci(_solve_values(runs, "solved_at_seconds")),
                "final": bootstrap_ci([np.mean(r["final_returns"]) for r in runs]),
                "train_seconds": bootstrap_ci([r["train_seconds"] for r in runs]),
                "eval_seconds": float(np.mean([r["eval_seconds"] for r in runs])),
            }
        )
    return rows


def solve_ratio(
    peers: dict, agent: str, other: str, key: str = "solved_at_steps", seed: int = 0
) -> Estimate:
    """Median `key` to solve of `agent` over `other`'s, with a 95% CI resampling each
    side's seeds on its own. Chapter 6."""
    a = _solve_values(runs_of(peers, "cartpole", agent), key)
    b = _solve_values(runs_of(peers, "cartpole", other), key)
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.median(a[rng.integers(0, a.size, (10_000, a.size))], 1) / np.median(
            b[rng.integers(0, b.size, (10_000, b.size))], 1
        )
    boot = np.nan_to_num(boot, nan=1.0)  # inf / inf: neither solved, no ratio
    low, high = np.quantile(boot, [0.025, 0.975], method="inverted_cdf")
    return Estimate(
        float(np.median(a) / np.median(b)), float(low), float(high), a.size + b.size
    )


def curve_quantiles(peers: dict, agent: str, x: str = "steps", points: int = 60):
    """Median and quartiles over seeds of `agent`'s CartPole-v1 checks against env
    steps (`x="steps"`) or training seconds (`x="seconds"`, each run interpolated on
    a common grid and held at its last value). Chapter 6."""
    runs = runs_of(peers, "cartpole", agent)
    if x == "steps":
        grid = np.asarray(runs[0]["grid_steps"], dtype=np.float64)
        values = np.array([r["grid_returns"] for r in runs])
    else:
        end = max(r["grid_seconds"][-1] for r in runs)
        grid = np.linspace(0.0, end, points)
        values = np.array(
            [np.interp(grid, r["grid_seconds"], r["grid_returns"]) for r in runs]
        )
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75], axis=0)
    return grid, median, q25, q75


def held_out_rows(peers: dict, maml_returns) -> list[dict]:
    """SB3 from scratch on held-out goal_sharp tasks at each budget, and the paired
    difference to MAML after one step on the same tasks (`maml_returns`: one value
    per task, MAML's mean over its training seeds). CIs over tasks. Chapter 6."""
    maml = np.asarray(maml_returns, dtype=np.float64)
    rows = []
    budgets = sorted({r["budget"] for r in runs_of(peers, "held_out")})
    for algo in ("sb3_ppo", "sb3_dqn"):
        for budget in budgets:
            runs = [
                r for r in runs_of(peers, "held_out", algo) if r["budget"] == budget
            ]
            if not runs:
                continue
            tasks = [r["task"] for r in runs]
            scores = np.array([r["return"] for r in runs])
            rows.append(
                {
                    "agent": algo,
                    "label": LABELS[algo],
                    "budget": budget,
                    "tasks": tasks,
                    "return": bootstrap_ci(scores),
                    "minus_maml": difference_ci(scores, maml[tasks], paired=True),
                    "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
                }
            )
    return rows


def memory_rows(peers: dict) -> list[dict]:
    """The memory learners on flip+physics test tasks with 0 gradient steps: mean
    with a two-level CI (seeds, then tasks), env steps and parameters; the shipped
    in-context models last. Chapter 6."""
    rows = []
    agents = ("sb3_recurrent_ppo", "in_context_best", "in_context_last")
    groups = [runs_of(peers, "memory", a) for a in agents]
    groups.append(peers.get("in_context_shipped") or [])
    for runs in groups:
        if not runs:
            continue
        matrix = np.array([r["returns"] for r in runs])
        rows.append(
            {
                "agent": runs[0]["agent"],
                "label": LABELS[runs[0]["agent"]],
                "seeds": len(runs),
                "matrix": matrix,
                "return": two_level_ci(matrix),
                "env_steps": float(np.median([r["env_steps"] for r in runs])),
                "parameters": runs[0].get("parameters"),
            }
        )
    return rows


def _json(value):
    if isinstance(value, Estimate):  # JSON has no infinity: "never solved" is null
        return {k: None if v == np.inf else v for k, v in value.to_dict().items()}
    if isinstance(value, np.ndarray):
        return np.round(value, 2).tolist()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def peers_summary(peers: dict, maml_held_out) -> dict:
    """The peers run's tables as JSON (the benchmark's ``peers`` section): CartPole-v1
    rows and ratios, held-out rows beside MAML (`maml_held_out`: its (runs, tasks)
    matrix on goal_sharp's held-out set after one step), memory rows. Chapter 6."""
    maml = np.asarray(maml_held_out, dtype=np.float64)
    held = held_out_rows(peers, maml.mean(0))
    tasks = held[0]["tasks"] if held else []
    return _json(
        {
            "card": peers["card"],
            "cartpole": cartpole_rows(peers),
            "ratios": [
                {
                    "agent": a,
                    "over": "our_ppo",
                    "of": key,
                    "ratio": solve_ratio(peers, a, "our_ppo", f"solved_at_{key}"),
                }
                for a in ("sb3_ppo", "sb3_dqn")
                for key in ("steps", "seconds")
            ],
            "held_out": held,
            "maml_held_out": two_level_ci(maml[:, tasks]) if tasks else None,
            "memory": [
                {k: v for k, v in r.items() if k != "matrix"}
                for r in memory_rows(peers)
            ],
        }
    )

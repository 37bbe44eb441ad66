"""Chapter 6's benchmark figures: adaptation comparison bars with CIs, and learning
curves over seeds.

Both read a benchmark results dict (``benchmark_results.json``) and skip what a run did
not measure. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_adaptation", "plot_learning_curves", "curve_band"]


def _bars(ax, rows, title):
    names = [r["name"] for r in rows]
    means = np.array([r["ci"]["mean"] for r in rows])
    err = np.array(
        [
            [r["ci"]["mean"] - r["ci"]["low"] for r in rows],
            [r["ci"]["high"] - r["ci"]["mean"] for r in rows],
        ]
    )
    y = np.arange(len(rows))
    ax.barh(y, means, xerr=err, color="#4c72b0", ecolor="black", capsize=3)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean return (95% CI)")
    ax.set_title(title, fontsize=10)


def plot_adaptation(results: dict):
    """Bars with 95% CIs: the card protocol's rows and the strong protocol's agents
    (chapter 6)."""
    import matplotlib.pyplot as plt

    panels = [
        (results[k]["rows"], t)
        for k, t in (
            ("card", "card protocol: CartPole-v1, 20 episodes"),
            ("strong", "strong protocol: goal test tasks"),
        )
        if results.get(k)
    ]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(11, 4.2), squeeze=False)
    for ax, (rows, title) in zip(axes[0], panels):
        _bars(ax, [r for r in rows if r.get("ci")], title)
    fig.tight_layout()
    return fig


def curve_band(curves: list[tuple[list, list]], grid=None):
    """Mean and min/max over seeds of curves (steps, returns) on a common step grid
    (chapter 6)."""
    curves = [(np.asarray(s, float), np.asarray(r, float)) for s, r in curves if len(s)]
    if grid is None:
        grid = np.unique(np.concatenate([s for s, _ in curves]))
    values = np.stack([np.interp(grid, s, r, right=np.nan) for s, r in curves])
    return grid, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def _curves(ax, runs):
    groups = {}
    for run in runs:
        if run.get("curve_steps"):
            groups.setdefault(run.get("label", run["algorithm"]), []).append(
                (run["curve_steps"], run["curve_returns"])
            )
    for name, curves in groups.items():
        grid, mean, low, high = curve_band(curves)
        (line,) = ax.plot(grid, mean, label=f"{name} ({len(curves)} runs)")
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)


def plot_learning_curves(results: dict):
    """Return against env steps, mean line and min-max band over runs (chapter 6).

    Left: the goal test tasks, PPO from scratch against the adapted agents (points
    at the env steps of their support episodes). Right: CartPole-v1, our PPO against
    SB3's.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    strong = results.get("strong") or {}
    _curves(left, strong.get("runs", []))
    for row in strong.get("rows", []):
        if row.get("adapted") and row.get("env_steps"):
            ci = row["ci"]
            left.errorbar(
                [row["env_steps"]],
                [ci["mean"]],
                yerr=[[ci["mean"] - ci["low"]], [ci["high"] - ci["mean"]]],
                fmt="o",
                capsize=3,
                label=row["name"],
            )
    left.set_title("goal test tasks", fontsize=10)
    _curves(
        right,
        (results.get("our_ppo") or {}).get("runs", [])
        + (results.get("peers") or {}).get("runs", []),
    )
    right.axhline(475, color="grey", lw=0.8, ls="--")
    right.set_title("CartPole-v1", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("environment steps (training or support)")
        ax.set_ylabel("return")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(
                fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2
            )
    fig.tight_layout()
    return fig

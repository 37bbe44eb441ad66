"""Chapter 6's figures of the peers run: CartPole-v1 learning curves against env steps
and against training seconds, SB3 from scratch against MAML's one step on held-out
tasks, and the memory learners on flip+physics.

Every figure is :data:`~ssm_metarl.bench.plots.WIDTH` wide, with 10 pt text, and
labels both axes in words; legends sit outside the axes, so they cover no data, and
markers that share a budget are spread sideways, so none hides another. Taught in
chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np

from ..report.plotting import errorbar_ci
from .peer_runs import TARGET
from .peers_report import LABELS, curve_quantiles
from .plots import WIDTH

__all__ = ["plot_cartpole_curves", "plot_held_out", "plot_memory"]


def plot_cartpole_curves(peers: dict):
    """Greedy return on the grid's 20 episodes against env steps (left) and training
    seconds (right): median and quartiles over seeds per agent. Chapter 6."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 2, figsize=(WIDTH, 3.8), sharey=True, layout="constrained"
    )
    for agent in ("our_ppo", "sb3_ppo", "sb3_dqn"):
        for ax, x in zip(axes, ("steps", "seconds")):
            grid, median, q25, q75 = curve_quantiles(peers, agent, x)
            (line,) = ax.plot(grid / (1000 if x == "steps" else 1), median)
            ax.fill_between(
                grid / (1000 if x == "steps" else 1),
                q25,
                q75,
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
            line.set_label(LABELS[agent])
    for ax in axes:
        ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("environment steps (thousands)")
    axes[1].set_xlabel("training seconds (checks excluded)")
    axes[0].set_ylabel("greedy return (20 episodes)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return fig


def plot_held_out(rows: list[dict], maml, support_steps: float):
    """Return on held-out goal_sharp tasks against training env steps (log scale):
    SB3 from scratch at each budget, MAML after one step at its support steps; 95%
    CIs over tasks. At one budget PPO is drawn a little left of it, DQN a little
    right and MAML on it, so no marker hides another. Chapter 6."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 3.8), layout="constrained")
    for algo, marker, shift in (("sb3_ppo", "o", -0.05), ("sb3_dqn", "s", 0.05)):
        mine = [r for r in rows if r["agent"] == algo]
        if mine:
            errorbar_ci(
                ax,
                [r["budget"] * 10**shift for r in mine],
                [r["return"] for r in mine],
                marker=marker,
                label=f"{LABELS[algo]}, from scratch",
            )
    errorbar_ci(
        ax,
        [support_steps],
        [maml],
        marker="D",
        color="black",
        label="MAML, one step on 10 support episodes",
    )
    ax.set_xscale("log")
    budgets = sorted({r["budget"] for r in rows} | {round(support_steps)})
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("environment steps on the task (log scale)")
    ax.set_ylabel("mean return (10 episodes)")
    fig.legend(loc="outside lower center", ncol=2)
    return fig


def plot_memory(rows: list[dict]):
    """Mean return with 0 gradient steps on flip+physics test tasks, with two-level
    95% CIs, one line per memory learner and its env steps. Chapter 6."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH, 0.6 + 0.55 * len(rows)))
    y = np.arange(len(rows))
    for i, r in enumerate(rows):
        e = r["return"]
        ax.errorbar(
            [e.mean],
            [i],
            xerr=[[e.mean - e.low], [e.high - e.mean]],
            fmt="o",
            capsize=3,
            color="C0",
        )
    ax.set_yticks(
        y, [f"{r['label']} ({r['env_steps'] / 1000:.0f}k steps)" for r in rows]
    )
    ax.invert_yaxis()
    ax.set_xlabel("mean greedy return, 0 gradient steps (95% CI)")
    ax.set_ylabel("memory learner")
    fig.tight_layout()
    return fig

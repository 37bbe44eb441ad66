"""Chapter 6's benchmark figure: the card protocol's rows and the strong protocol's
rows as bars with 95% CIs.

It reads a benchmark results dict (``benchmark_results.json``) and skips what a run did
not measure; the peers run's figures are :mod:`ssm_metarl.bench.peers_plots`. Taught in
chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["WIDTH", "plot_adaptation"]

#: Chapter 6's figures are this many inches wide: with the 0.1 in that a tight save
#: pads on each side they fill the book's 8-inch column, unscaled.
WIDTH = 7.8


def _bars(ax, rows, title):
    # the reason a row stands for another setting is the table's, not the figure's
    names = [r["name"].split(" (")[0] for r in rows]
    means = np.array([r["ci"]["mean"] for r in rows])
    err = np.array(
        [
            [r["ci"]["mean"] - r["ci"]["low"] for r in rows],
            [r["ci"]["high"] - r["ci"]["mean"] for r in rows],
        ]
    )
    y = np.arange(len(rows))
    ax.barh(y, means, xerr=err, color="#4c72b0", ecolor="black", capsize=3)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("mean return (95% CI)")
    ax.set_ylabel("agent and setting")
    ax.set_title(title, fontsize=10, loc="left")


def plot_adaptation(results: dict):
    """Bars with 95% CIs: the card protocol's rows and the strong protocol's agents,
    :data:`WIDTH` wide with 10 pt text (chapter 6)."""
    import matplotlib.pyplot as plt

    panels = [
        (results[k]["rows"], t)
        for k, t in (
            ("card", "card protocol: CartPole-v1, 20 episodes"),
            ("strong", "strong protocol: goal test tasks"),
        )
        if results.get(k)
    ]
    panels = [([r for r in rows if r.get("ci")], t) for rows, t in panels]
    sizes = [max(1, len(rows)) for rows, _ in panels] or [1]
    fig, axes = plt.subplots(
        len(sizes),
        1,
        figsize=(WIDTH, 1.0 + 0.8 * len(sizes) + 0.27 * sum(sizes)),
        squeeze=False,
        gridspec_kw={"height_ratios": sizes},
    )
    for ax, (rows, title) in zip(axes[:, 0], panels):
        _bars(ax, rows, title)
    fig.tight_layout()
    fig.align_ylabels(axes[:, 0])
    return fig

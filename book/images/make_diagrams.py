"""Draw the book's structure diagrams as SVG files next to this script.

    python book/images/make_diagrams.py

- ``ssm_three_views.svg``: one linear SSM computed as a recurrence, a convolution and a scan (chapter 1);
- ``scan_tree.svg``: the recursive-doubling scan that ``ssm_metarl.parallel_scan`` runs (chapter 1);
- ``maml_loops.svg``: MAML's inner and outer loop (chapter 3).

The notation follows the chapters: state $x_k$, input $u_k$, output $y_k$, $\\bar A$, $\\bar B$, $C$,
kernel $K_j = C \\bar A^j \\bar B$; MAML's $\\theta$, $\\theta_i'$, $\\alpha$, $\\beta$.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

HERE = Path(__file__).resolve().parent
INK = "#222222"
MUTED = "#666666"
BLUE, GREEN, ORANGE, RED, PURPLE = "#0072B2", "#009E73", "#E69F00", "#D55E00", "#CC79A7"
LIGHT = {BLUE: "#D6E9F5", GREEN: "#D2F0E6", ORANGE: "#FBEACC", RED: "#F7DCCD", PURPLE: "#F3E0EB"}

plt.rcParams.update({
    "font.size": 12,
    "mathtext.fontset": "dejavusans",
    "svg.fonttype": "path",  # text as outlines: the SVG looks the same without our fonts
    "svg.hashsalt": "ssm-metarl",  # stable ids, so a re-run changes no byte
})


def canvas(width, height):
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax, x, y, text, color=BLUE, w=0.9, h=0.6, size=13, weight="normal"):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=LIGHT.get(color, "white"), ec=color, lw=1.5))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, color=INK, weight=weight)


def node(ax, x, y, text, color=BLUE, r=0.33, size=13):
    ax.add_patch(Circle((x, y), r, fc=LIGHT[color], ec=color, lw=1.5))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, color=INK)


def arrow(ax, start, end, color=INK, label=None, label_at=0.5, offset=(0, 0.18), size=12, lw=1.3, style="-|>",
          shrink=0, ls="-", rad=0.0, boxed=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=13, color=color, lw=lw,
                                 shrinkA=shrink, shrinkB=shrink, linestyle=ls,
                                 connectionstyle=f"arc3,rad={rad}"))
    if label:
        mx = start[0] + (end[0] - start[0]) * label_at + offset[0]
        my = start[1] + (end[1] - start[1]) * label_at + offset[1]
        ax.text(mx, my, label, ha="center", va="center", fontsize=size, color=color,
                bbox=dict(fc="white", ec="none", pad=1.0) if boxed else None)


def title(ax, x, y, text, size=14):
    ax.text(x, y, text, ha="left", va="center", fontsize=size, color=INK, weight="bold")


def note(ax, x, y, text, size=11.5, color=MUTED, ha="left"):
    ax.text(x, y, text, ha=ha, va="center", fontsize=size, color=color, linespacing=1.4)


def three_views():
    fig, ax = canvas(10, 11.8)

    # (a) Recurrence: x_k = Abar x_{k-1} + Bbar u_k, y_k = C x_k + D u_k.
    top = 11.4
    title(ax, 0.2, top, "(a) Recurrence: one step at a time")
    xs = [1.3, 3.1, 4.9, 6.7]
    y_state, y_in, y_out = top - 2.0, top - 3.35, top - 0.75
    arrow(ax, (0.2, y_state), (xs[0] - 0.35, y_state), label=r"$\bar A$", color=BLUE)
    for k, x in enumerate(xs):
        node(ax, x, y_state, f"$x_{k}$")
        box(ax, x, y_in, f"$u_{k}$", color=ORANGE, w=0.7, h=0.5)
        box(ax, x, y_out, f"$y_{k}$", color=GREEN, w=0.7, h=0.5)
        arrow(ax, (x, y_in + 0.27), (x, y_state - 0.35), label=r"$\bar B$", offset=(0.22, 0), color=ORANGE)
        arrow(ax, (x, y_state + 0.35), (x, y_out - 0.27), label="$C$", offset=(0.2, 0), color=GREEN)
        if k + 1 < len(xs):
            arrow(ax, (x + 0.35, y_state), (xs[k + 1] - 0.35, y_state), label=r"$\bar A$", color=BLUE)
    arrow(ax, (xs[-1] + 0.35, y_state), (xs[-1] + 1.1, y_state), label=r"$\bar A$", color=BLUE)
    ax.text(xs[-1] + 1.35, y_state, r"$\cdots$", fontsize=14, va="center", color=INK)
    note(ax, 8.05, y_state + 0.55, r"$x_k = \bar A x_{k-1} + \bar B u_k$" "\n" r"$y_k = C x_k + D u_k$",
         size=12.5, color=INK)
    note(ax, 8.05, y_state - 0.75, "L sequential steps,\nconstant memory:\nhow a policy acts")

    # (b) Convolution: y_k = sum_j K_j u_{k-j}, K_j = C Abar^j Bbar.
    top = 7.25
    title(ax, 0.2, top, "(b) Convolution: every output at once")
    us = [1.3 + 1.2 * i for i in range(6)]
    y_u, y_y = top - 2.45, top - 0.85
    for i, x in enumerate(us):
        box(ax, x, y_u, f"$u_{i}$", color=ORANGE, w=0.7, h=0.5)
    target = us[-1]
    box(ax, target, y_y, "$y_5$", color=GREEN, w=0.7, h=0.5)
    for j in range(4):
        src = us[-1 - j]
        arrow(ax, (src, y_u + 0.27), (target - 0.05 * j, y_y - 0.27), color=PURPLE, lw=1.1,
              label=f"$K_{j}$", label_at=0.3, offset=(0, 0), boxed=True)
    note(ax, us[0] - 0.45, y_u - 0.6, r"kernel $K_j = C\,\bar A^{\,j}\,\bar B$: the response to one impulse")
    note(ax, 8.05, y_y - 0.25, r"$y_k = \sum_{j} K_j\, u_{k-j} + D u_k$", size=12.5, color=INK)
    note(ax, 8.05, y_y - 1.25, "one FFT, O(L log L);\nneeds the same\n" r"$\bar A, \bar B$ at every step")

    # (c) Scan: pairs (a, b_k) = (Abar, Bbar u_k) combined by an associative operator.
    top = 3.15
    title(ax, 0.2, top, "(c) Scan: combine neighbours, log L levels deep")
    leaves = [1.3 + 1.0 * i for i in range(4)]
    y0, y1, y2 = top - 2.6, top - 1.6, top - 0.75
    for k, x in enumerate(leaves):
        box(ax, x, y0, rf"$(\bar A, \bar B u_{k})$", color=ORANGE, w=0.95, h=0.48, size=10.5)
    mids = [(leaves[0] + leaves[1]) / 2, (leaves[2] + leaves[3]) / 2]
    for m, (l, r) in zip(mids, ((0, 1), (2, 3))):
        node(ax, m, y1, r"$\circ$", color=BLUE, r=0.22, size=15)
        arrow(ax, (leaves[l], y0 + 0.25), (m - 0.1, y1 - 0.2), color=BLUE, lw=1.1)
        arrow(ax, (leaves[r], y0 + 0.25), (m + 0.1, y1 - 0.2), color=BLUE, lw=1.1)
    root = sum(mids) / 2
    node(ax, root, y2, r"$\circ$", color=BLUE, r=0.22, size=15)
    for m in mids:
        arrow(ax, (m, y1 + 0.22), (root + (0.12 if m > root else -0.12), y2 - 0.2), color=BLUE, lw=1.1)
    arrow(ax, (root + 0.22, y2), (root + 1.3, y2), color=GREEN, label=r"$(\bar A^4, x_3)$", offset=(0.3, 0.25))
    note(ax, 5.9, y1 + 0.35, r"$(a, b) \circ (a', b') = (a' a,\; a' b + b')$", size=12.5, color=INK)
    note(ax, 5.9, y1 - 0.6, "associative: any grouping gives the same\n"
         r"states, so pairs combine in parallel;" "\n" r"$\bar A_k$ may change with $k$ (Mamba)")
    save(fig, "ssm_three_views.svg")


def scan_tree():
    """The recursion of ``parallel_scan`` for L = 8: pair up, solve the half problem, fill in."""
    n = 8
    fig, ax = canvas(10.6, 9.0)
    xs = [2.3 + 1.1 * t for t in range(n)]
    y_in, y_out = 8.0, 0.9
    level = {1: 6.8, 2: 5.7, 3: 4.6}
    y_fill2, y_fill1 = 3.4, 2.2
    r = 0.25
    for t, x in enumerate(xs):
        box(ax, x, y_in, f"$b_{t}$", color=ORANGE, w=0.62, h=0.46)
        box(ax, x, y_out, f"$x_{t}$", color=GREEN, w=0.62, h=0.46)
    note(ax, xs[0] - 0.35, y_in + 0.6, r"inputs $b_t = \bar B u_t$;   states $x_t = a\,x_{t-1} + b_t$,  $x_{-1} = 0$",
         color=INK, size=12)

    # Where each column's latest value is, top to bottom; a vertical line carries it down.
    column_nodes = {t: [y_in] for t in range(n)}

    def plus(x, y, color):
        node(ax, x, y, "+", color=color, r=r, size=13)

    def combine(t, y, src_t, mult, color, label_at=0.45):
        """Node at column t, row y: mult * (value of column src_t) + the value flowing down column t."""
        plus(xs[t], y, color)
        column_nodes[t].append(y)
        # The partner's value leaves its column just above this row (it flows down that column's line).
        start = (xs[src_t], y + 0.95)
        arrow(ax, start, (xs[t] - r * 0.8, y + r * 0.6), color=color, lw=1.3, label=mult, label_at=label_at,
              offset=(0.1, 0.2), size=11.5)

    # Up: pair neighbours; each level is the same problem at half the length with a squared.
    for t in range(1, n, 2):
        combine(t, level[1], t - 1, "$a$", BLUE)
    for t in range(3, n, 4):
        combine(t, level[2], t - 2, "$a^2$", BLUE)
    combine(7, level[3], 3, "$a^4$", BLUE)
    # Down: fill in what the recursion skipped, from the left neighbour's finished state.
    combine(5, y_fill2, 3, "$a^2$", GREEN)
    for t in (2, 4, 6):
        combine(t, y_fill1, t - 1, "$a$", GREEN)

    # Vertical lines: each value flows down its column to the next node or to the output.
    for t in range(n):
        stops = sorted(column_nodes[t], reverse=True) + [y_out]
        for upper, lower in zip(stops, stops[1:]):
            top = upper - (0.23 if upper == y_in else r)
            bottom = lower + (0.23 if lower == y_out else r)
            final = lower == y_out  # below its last node a column carries a finished state (green)
            arrow(ax, (xs[t], top), (xs[t], bottom), color=GREEN if final else MUTED, lw=1.0 if final else 0.9)

    note(ax, -0.2, (level[1] + level[3]) / 2, "pair up:\nthe odd states\nare a problem\nof half the\nlength\n"
         r"with $a \to a^2$", size=13, color=BLUE)
    note(ax, -0.2, (y_fill2 + y_fill1) / 2, "fill in:\n" r"$x_{2i} = a\,x_{2i-1}$" "\n" r"$\quad + \,b_{2i}$",
         size=13, color=GREEN)
    note(ax, (xs[0] + xs[-1]) / 2, 0.2,
         r"$\log_2 L$ levels up and down; each level is a few elementwise operations on the whole sequence",
         size=12.5, ha="center")
    save(fig, "scan_tree.svg")


def maml_loops():
    fig, ax = canvas(11.9, 6.4)

    # Left: parameter space, as in Finn et al. (2017), Figure 1.
    title(ax, 0.2, 6.05, "parameter space")
    theta = (2.0, 2.3)
    ax.plot(*theta, "o", color=INK, ms=8)
    ax.text(theta[0] - 0.2, theta[1] - 0.38, r"$\theta$", fontsize=16, color=INK)
    ends = [(1.0, 4.6), (3.3, 4.9), (4.0, 2.9)]
    for i, end in enumerate(ends, start=1):
        arrow(ax, theta, end, color=ORANGE, lw=1.6)
        ax.plot(*end, "o", color=GREEN, ms=7)
        ax.text(end[0] + 0.15, end[1] + 0.2, rf"$\theta_{i}'$", fontsize=14, color=GREEN)
    ax.text(3.05, 2.2, r"$-\alpha \nabla \mathcal{L}_i$", fontsize=12, color=ORANGE)
    arrow(ax, (0.5, 1.0), theta, color=BLUE, lw=1.6, ls="--", rad=-0.35)
    ax.text(0.35, 1.55, "meta-\nlearning", fontsize=11, color=BLUE, ha="center")
    note(ax, 0.25, 0.45, r"$\theta$ is placed where one step" "\n" "reaches a good $\\theta_i'$ for every task",
         size=11)

    # Right: the two loops as a flow.
    x0 = 6.0
    title(ax, x0 - 0.6, 6.05, "one meta-update")
    box(ax, x0 + 2.1, 5.35, r"sample a batch of tasks $\mathcal{T}_1,\dots,\mathcal{T}_n$", color=BLUE, w=4.6, h=0.55,
        size=11.5)
    ax.add_patch(FancyBboxPatch((x0 - 0.35, 1.75), 4.9, 2.95, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc="white", ec=ORANGE, lw=1.4, ls="--"))
    ax.text(x0 - 0.2, 4.5, "inner loop, for each task $i$ (batched)", fontsize=11, color=ORANGE, va="center")
    box(ax, x0 + 2.1, 3.9, r"support data with $\theta$ $\to$ $\mathcal{L}_i^{\mathrm{support}}(\theta)$",
        color=ORANGE, w=4.5, h=0.55, size=11.5)
    box(ax, x0 + 2.1, 3.0, r"$\theta_i' = \theta - \alpha\,\nabla_\theta \mathcal{L}_i^{\mathrm{support}}(\theta)$",
        color=ORANGE, w=4.5, h=0.6, size=12)
    box(ax, x0 + 2.1, 2.15, r"query data with $\theta_i'$ $\to$ $\mathcal{L}_i^{\mathrm{query}}(\theta_i')$",
        color=GREEN, w=4.5, h=0.55, size=11.5)
    box(ax, x0 + 2.1, 0.95, r"outer loop: $\theta \leftarrow \theta - \beta\,\nabla_\theta \sum_i"
        r"\mathcal{L}_i^{\mathrm{query}}(\theta_i')$", color=BLUE, w=4.9, h=0.65, size=12)
    for a, b in ((5.05, 4.2), (3.6, 3.32), (2.68, 2.45), (1.85, 1.3)):
        arrow(ax, (x0 + 2.1, a), (x0 + 2.1, b), color=INK)
    arrow(ax, (x0 + 4.58, 0.95), (x0 + 4.45, 5.35), color=BLUE, rad=0.3, lw=1.4)
    ax.text(x0 + 5.45, 3.1, "repeat", fontsize=11, color=BLUE, rotation=90, va="center")
    note(ax, x0 - 0.6, 0.25, r"the outer gradient flows through $\theta_i'$ (second order); first-order MAML stops it",
         size=10.5)
    save(fig, "maml_loops.svg")


def save(fig, name):
    fig.savefig(HERE / name, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight",
                pad_inches=0.1)
    plt.close(fig)
    print("wrote", HERE / name)


if __name__ == "__main__":
    three_views()
    scan_tree()
    maml_loops()

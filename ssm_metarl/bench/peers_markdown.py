"""The benchmark's ``peers`` and ``speed`` sections as markdown tables: the README's
results section and ``tables/benchmark_results.md``.

The ``peers`` section is :func:`~ssm_metarl.bench.peers_report.peers_summary` of the
shipped peers run; ``speed`` splits into "how many times faster" and "how many times
its floor", two questions with two tables. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

__all__ = ["solve_text", "peers_lines", "speed_lines", "is_floor"]


def solve_text(e, spec: str = ",.0f") -> str:
    """A median to solve with its CI; an unsolved median (None or inf) reads "not
    reached". Chapter 6."""
    if e is None:
        return "–"
    e = e if isinstance(e, dict) else e.to_dict()

    def one(x):
        if x is None or x == float("inf"):
            return "not reached"
        return format(x, spec)

    return f"{one(e['mean'])} [{one(e['low'])}, {one(e['high'])}]"


def _ci(e, digits: int = 1) -> str:
    if e is None:
        return "–"
    return f"{e['mean']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def peers_lines(peers: dict) -> list[str]:
    """The peers section's three tables: CartPole-v1, held-out goals, memory.
    Chapter 6."""
    card = peers.get("card") or {}
    lines = [
        "**Peers on CartPole-v1** (one interleaved run, "
        f"`{card.get('command', '')}`, {card.get('wall_seconds', 0) / 60:.0f} min; "
        "greedy checks on 20 fixed episodes every 1,000 steps; medians over seeds, "
        "95% CIs)",
        "",
        "| agent | solved | steps to solve | training s to solve | final return |",
        "|---|---|---|---|---|",
    ]
    for r in peers.get("cartpole", []):
        lines.append(
            f"| {r['label']} | {r['solved']}/{r['seeds']} | {solve_text(r['steps'])} "
            f"| {solve_text(r['seconds'], '.1f')} | {_ci(r['final'])} |"
        )
    labels = {r["agent"]: r["label"] for r in peers.get("cartpole", [])}
    ratios: dict[tuple, dict] = {}
    for r in peers.get("ratios") or []:
        ratios.setdefault((r["agent"], r["over"]), {})[r["of"]] = _ci(r["ratio"], 2)
    for (agent, over), of in ratios.items():
        lines.append(
            f"| {labels[agent]} over {labels[over]} (ratio of medians) | | "
            f"{of.get('steps', '–')}× | {of.get('seconds', '–')}× | |"
        )
    lines += [
        "",
        "**SB3 from scratch on held-out goal_sharp tasks** (one seed per task; MAML: "
        f"one step, five trained models: {_ci(peers.get('maml_held_out'))})",
        "",
        "| agent | env steps | return | minus MAML (paired by task) |",
        "|---|---|---|---|",
    ]
    for r in peers.get("held_out", []):
        lines.append(
            f"| {r['label']} | {r['budget']:,} | {_ci(r['return'])} | "
            f"{_ci(r['minus_maml'])} |"
        )
    lines += [
        "",
        "**Memory learners on flip+physics test tasks** (0 gradient steps, greedy; CI "
        "over training seeds and tasks)",
        "",
        "| agent | seeds | median env steps | return |",
        "|---|---|---|---|",
    ]
    for r in peers.get("memory", []):
        lines.append(
            f"| {r['label']} | {r['seeds']} | {r['env_steps']:,.0f} | "
            f"{_ci(r['return'])} |"
        )
    return lines + [""]


def is_floor(row: dict) -> bool:
    """A speed row that says how many times its floor a variant takes, not how many
    times faster it is. Chapter 6."""
    return "floor" in row["name"]


def _ratio(r: dict) -> str:
    if "low" in r:
        return f"{r['mean']:.1f}× [{r['low']:.1f}, {r['high']:.1f}]"
    return f"{r['mean']:.1f}× (no CI)"


def speed_lines(speed: dict) -> list[str]:
    """The speed section as two tables: times faster, and times its floor.
    Chapter 6."""
    rows = speed.get("rows", [])
    lines = []
    floor = "how many times its floor (1× = the floor)"
    for title, mine in (
        ("how many times faster", [r for r in rows if not is_floor(r)]),
        (floor, [r for r in rows if is_floor(r)]),
    ):
        if mine:
            lines += [
                f"**Speed: {title}** (variants timed in turns in one run, one torch "
                "thread; 95% CI over rounds)",
                "",
                "| figure | ratio [95% CI] |",
                "|---|---|",
            ]
            lines += [f"| {r['name']} | {_ratio(r['ratio'])} |" for r in mine] + [""]
    return lines

"""Chapter 6's benchmark command and its outputs:
``python -m ssm_metarl benchmark --protocol ... --out DIR``.

Writes ``DIR/benchmark_results.json``, ``DIR/plots/adaptation_comparison.png``,
``DIR/plots/learning_curves.png`` and ``DIR/tables/benchmark_results.md``, all from the
run it just made, and (``--readme``) rewrites the README's marked results section from
that JSON. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

__all__ = [
    "add_parsers",
    "cmd_benchmark",
    "write_outputs",
    "results_markdown",
    "update_readme",
    "PROTOCOLS",
    "SECTIONS",
    "README_START",
    "README_END",
]

#: What ``--protocol`` runs: ``card`` (the seed card's protocol on CartPole-v1),
#: ``strong`` (card + held-out tasks, several seeds, PPO from scratch), ``peers``
#: (Stable-Baselines3 PPO and DQN; the ``bench`` extra), ``speed`` (the ``bench`` speed
#: ratios, small sizes) and ``family`` (SB3 on held-out goal tasks; ``bench`` extra).
PROTOCOLS = ("card", "strong", "peers", "speed", "family")
#: JSON sections each protocol writes (``--merge`` keeps an earlier run's sections this
#: run did not measure).
SECTIONS = {
    "card": ("card",),
    "strong": ("strong", "our_ppo"),
    "peers": ("peers",),
    "speed": ("speed",),
    "family": ("family",),
}
README_START = (
    "<!-- benchmark:start (rewritten by python -m ssm_metarl benchmark --readme; do "
    "not edit) -->"
)
README_END = "<!-- benchmark:end -->"


def _fmt(e) -> str:
    if e is None:
        return "–"
    if isinstance(e, dict) and "mean" in e:
        if "low" in e:
            return f"{e['mean']:.1f} [{e['low']:.1f}, {e['high']:.1f}]"
        return f"{e['mean']:.1f} ± {e['std']:.1f}"
    return str(e)


def results_markdown(results: dict) -> str:
    """The results as one markdown table per section (chapter 6): card rows, strong
    rows, peers."""
    lines = []
    card = results.get("card")
    if card:
        lines += [
            f"**Card protocol** ({card['what']})",
            "",
            "| row | card reported | measured (mean ± std) | 95% CI |",
            "|---|---|---|---|",
        ]
        for row in card["rows"]:
            lines.append(
                f"| {row['name']} | {row['reported']} | {_fmt(row['std'])} | "
                f"{_fmt(row['ci'])} |"
            )
        lines.append("")
    strong = results.get("strong")
    if strong:
        lines += [
            f"**Strong protocol** ({strong['what']})",
            "",
            "| agent | return [95% CI] | env steps used |",
            "|---|---|---|",
        ]
        for row in strong["rows"]:
            lines.append(
                f"| {row['name']} | {_fmt(row['ci'])} | {row.get('env_steps', '–')} |"
            )
        lines.append("")
    peers = results.get("peers")
    if peers:
        lines += [
            "**CartPole-v1 to a greedy mean ≥ 475 over 100 episodes** "
            f"({peers['library']}, {peers['hyperparameters']})",
            "",
            "| agent | solved | median env steps | median seconds | final return [95% "
            "CI] |",
            "|---|---|---|---|---|",
        ]
        summaries = dict(peers["summary"])
        if results.get("our_ppo"):
            summaries = {"our_ppo": results["our_ppo"]["summary"], **summaries}
        for name, s in summaries.items():
            steps, seconds = s["median_solve_steps"], s["median_solve_seconds"]
            steps = "–" if steps is None else f"{steps:,.0f}"
            seconds = "–" if seconds is None else f"{seconds:.1f}"
            lines.append(
                f"| {name} | {s['solved']}/{s['seeds']} | {steps} | {seconds} | "
                f"{_fmt(s.get('final_return'))} |"
            )
        lines.append("")
    family = results.get("family")
    if family:
        lines += [
            f"**SB3 on held-out tasks** ({family['what']})",
            "",
            "| agent | return [95% CI] |",
            "|---|---|",
        ]
        lines += [
            f"| {row['name']} | {_fmt(row['ci'])} |" for row in family["rows"]
        ] + [""]
    speed = _speed_rows(results)
    if speed:
        lines += [
            "**Speed** (how many times faster, measured side by side in one run; 95% "
            "CI)",
            "",
            "| figure | ratio [95% CI] |",
            "|---|---|",
        ]
        lines += [f"| {row['name']} | {_ratio(row['ratio'])} |" for row in speed] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _ratio(r: dict) -> str:
    if "low" in r:
        return f"{r['mean']:.1f}× [{r['low']:.1f}, {r['high']:.1f}]"
    return f"{r['mean']:.1f}× (no CI)"


def _speed_rows(results: dict) -> list[dict]:
    """The speed section's rows, then our PPO vs SB3's in time to solve (from the
    peers sections)."""
    from .speed_table import ppo_time_to_solve

    rows = list((results.get("speed") or {}).get("rows", []))
    ppo = ppo_time_to_solve(results)
    return rows + [ppo] if ppo and rows else rows


def update_readme(readme: str | Path, results: dict) -> bool:
    """Rewrite the text between `README_START` and `README_END` with `results_markdown`
    (chapter 6).

    Returns True when the file changed. Raises ValueError when the markers are missing.
    """
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(
            f"{path} has no benchmark section (the lines {README_START!r} and "
            f"{README_END!r})"
        )
    body = results_markdown(results)
    if results.get("command"):
        body = f"Measured by `{results['command']}`.\n\n" + body
    new = re.sub(
        re.escape(README_START) + r".*?" + re.escape(README_END),
        lambda _: README_START + "\n" + body + README_END,
        text,
        flags=re.S,
    )
    if new != text:
        path.write_text(new)
    return new != text


def write_outputs(results: dict, out: str | Path) -> dict[str, Path]:
    """Write the JSON, the two plots and the markdown table under `out`; return their
    paths (chapter 6)."""
    from ..io.atomic import save_json
    from .plots import plot_adaptation, plot_learning_curves

    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "benchmark_results.json",
        "adaptation": out / "plots" / "adaptation_comparison.png",
        "curves": out / "plots" / "learning_curves.png",
        "table": out / "tables" / "benchmark_results.md",
    }
    save_json(paths["json"], results)
    paths["table"].write_text(results_markdown(results))
    fig = plot_adaptation(results)
    fig.savefig(paths["adaptation"], dpi=120, bbox_inches="tight")
    fig = plot_learning_curves(results)
    fig.savefig(paths["curves"], dpi=120, bbox_inches="tight")
    return paths


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run the chosen protocols and write their outputs (chapter 6)."""
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = {
        "command": "python -m ssm_metarl " + " ".join(args.argv),
        "created_by": "ssm_metarl.cli benchmark",
        "torch": torch.__version__,
        "threads": args.threads,
        "python": platform.python_version(),
        "protocols": args.protocol,
        "seconds": {},
    }
    say = (
        (lambda *a: None)
        if args.quiet
        else (lambda msg: print(msg, file=sys.stderr, flush=True))
    )
    if "card" in args.protocol or "strong" in args.protocol:
        from .protocols import card_protocol

        t = time.perf_counter()
        results["card"] = card_protocol(seed=args.seed, progress=not args.quiet)
        results["seconds"]["card"] = round(time.perf_counter() - t, 1)
        say(f"card protocol: {results['seconds']['card']} s")
    if "strong" in args.protocol:
        from .protocols import strong_protocol

        t = time.perf_counter()
        results["strong"] = strong_protocol(
            seeds=args.seeds, seed=args.seed, progress=not args.quiet
        )
        results["seconds"]["strong"] = round(time.perf_counter() - t, 1)
        say(f"strong protocol: {results['seconds']['strong']} s")
        from .protocols import our_ppo_cartpole

        t = time.perf_counter()
        results["our_ppo"] = our_ppo_cartpole(
            range(args.seed, args.seed + args.peer_seeds)
        )
        results["seconds"]["our_ppo"] = round(time.perf_counter() - t, 1)
    if "peers" in args.protocol:
        from .peers import run_peers

        t = time.perf_counter()
        results["peers"] = run_peers(
            seeds=range(args.seed, args.seed + args.peer_seeds),
            timesteps={"ppo": args.ppo_timesteps},
            progress=lambda r: say(
                f"{r['algorithm']} seed {r['seed']}: "
                f"solved at {r['solved_at_steps']} steps, "
                f"final {r['final_mean']:.1f}"
            ),
        )
        results["seconds"]["peers"] = round(time.perf_counter() - t, 1)
    if "speed" in args.protocol:
        from .speed_table import speed_section

        t = time.perf_counter()
        results["speed"] = speed_section(seed=args.seed, progress=say)
        results["seconds"]["speed"] = round(time.perf_counter() - t, 1)
    if "family" in args.protocol:
        from .speed_table import family_section

        t = time.perf_counter()
        results["family"] = family_section(
            n_tasks=args.family_tasks,
            budget=args.family_budget,
            seed=args.seed,
            algos=tuple(args.family_algos),
            progress=say,
        )
        results["seconds"]["family"] = round(time.perf_counter() - t, 1)
    results["seconds"]["total"] = round(time.perf_counter() - start, 1)
    # sections measured by an earlier run, kept with that run's command
    for path in args.merge or ():
        earlier = load_results(path)
        merged = results.setdefault("merged", {})
        for protocol in PROTOCOLS:
            for section in SECTIONS[protocol]:
                if section in earlier and section not in results:
                    results[section] = earlier[section]
                    # merged into the earlier run: keep its origin
                    before = earlier.get("merged", {}).get(section)
                    if before:
                        merged[section] = before
                    elif all(
                        m.get("command") != earlier.get("command")
                        for m in merged.values()
                    ):
                        key = "+".join(earlier.get("protocols") or [protocol])
                        # one entry per earlier run
                        merged[key] = {
                            "command": earlier.get("command"),
                            "seconds": earlier.get("seconds", {}).get("total"),
                        }
        # runs before the earlier run first, in its order: the rerun order
        order = list(earlier.get("merged", {}))
        results["merged"] = dict(
            sorted(
                merged.items(),
                key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order),
            )
        )
    paths = write_outputs(results, args.out)
    if args.ship:
        from ..io.atomic import save_json

        paths["shipped"] = save_json(args.ship, results)
    if args.readme:
        update_readme(args.readme, results)
    for path in paths.values():
        print(path)
    return 0


def check_benchmark(args: argparse.Namespace) -> None:
    from ..io.validation import check_int

    check_int("threads", args.threads)
    check_int("seeds", args.seeds)
    check_int("peer_seeds", args.peer_seeds)
    check_int("family_tasks", args.family_tasks)
    check_int("family_budget", args.family_budget)


def add_parsers(sub) -> None:
    """``benchmark``: chapter 6's agent benchmark (``bench`` stays the speed
    benchmarks)."""
    bench = sub.add_parser(
        "benchmark",
        help="chapter 6: the model card's numbers re-measured, with peers",
        description=__doc__.splitlines()[0],
    )
    bench.add_argument(
        "--protocol",
        nargs="+",
        choices=PROTOCOLS,
        default=["card"],
        help=(
            "card: the seed card's protocol; strong: card + held-out tasks, seeds and "
            "CIs; peers: Stable-Baselines3 PPO/DQN (needs the bench extra); speed: "
            "the bench speed ratios; family: SB3 on held-out goal tasks (bench extra)"
        ),
    )
    bench.add_argument("--out", required=True, help="output directory")
    bench.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="evaluation seeds of the strong protocol (default: 3)",
    )
    bench.add_argument(
        "--peer_seeds",
        type=int,
        default=5,
        help="training seeds of each SB3 peer (default: 5)",
    )
    bench.add_argument(
        "--ppo_timesteps",
        type=int,
        default=50_000,
        help="SB3 PPO's budget (RL Zoo's is 100000; default: 50000)",
    )
    bench.add_argument(
        "--family_tasks",
        type=int,
        default=8,
        help="family: held-out goal tasks (default: 8)",
    )
    bench.add_argument(
        "--family_budget",
        type=int,
        default=10_000,
        help=(
            "family: env steps per task and learner (default: 10000, the strong PPO "
            "row's)"
        ),
    )
    bench.add_argument(
        "--family_algos",
        nargs="+",
        choices=("ppo", "dqn"),
        default=["ppo", "dqn"],
        help="family: which SB3 learners (default: ppo dqn)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--threads", type=int, default=1, help="torch threads (default: 1)"
    )
    bench.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="benchmark JSONs of earlier runs whose sections this run did not measure",
    )
    bench.add_argument(
        "--ship",
        default=None,
        help="also write the JSON here (e.g. models/benchmark_results.json)",
    )
    bench.add_argument(
        "--readme", default=None, help="rewrite this README's marked results section"
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=cmd_benchmark, check=check_benchmark)


def load_results(path: str | Path) -> dict:
    """A benchmark JSON (chapter 6)."""
    return json.loads(Path(path).read_text())

"""Chapter 6's benchmark results file and what is made from it: the markdown tables,
the README's results section and the figures.

``benchmark_results.json`` holds one section per measured protocol (`SECTIONS`). From it
come ``tables/benchmark_results.md``, the two plots and, between `README_START` and
`README_END`, the README's results section. Every output is made in memory first and
then written whole (:func:`~ssm_metarl.io.paths.write_file`), so a failing write never
leaves a half-written file. :func:`check_results` tells whether a JSON file has this
shape before a run merges it. Taught in chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

__all__ = [
    "PROTOCOLS",
    "SECTIONS",
    "README_START",
    "README_END",
    "results_markdown",
    "readme_with_results",
    "update_readme",
    "write_outputs",
    "load_results",
    "check_results",
]

#: What ``--protocol`` runs: ``card`` (the seed card's protocol on CartPole-v1),
#: ``strong`` (card + test tasks, several seeds, PPO from scratch), ``peers``
#: (Stable-Baselines3 PPO and DQN; the ``bench`` extra), ``speed`` (the ``bench`` speed
#: ratios, small sizes) and ``family`` (SB3 on goal test tasks; ``bench`` extra).
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
#: What both markers begin with: results text holding it could fake a marker.
MARKER_PREFIX = "<!-- benchmark:"
#: The files ``write_outputs`` writes under ``--out`` (a folder each for plots and
#: tables).
OUTPUTS = {
    "json": "benchmark_results.json",
    "adaptation": "plots/adaptation_comparison.png",
    "curves": "plots/learning_curves.png",
    "table": "tables/benchmark_results.md",
}


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
            f"**SB3 on goal test tasks** ({family['what']})",
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
    from .time_to_solve import ppo_time_to_solve

    rows = list((results.get("speed") or {}).get("rows", []))
    ppo = ppo_time_to_solve(results)
    return rows + [ppo] if ppo and rows else rows


def check_readme_markers(text: str, where: str) -> None:
    """Exactly one `README_START` and then one `README_END` in ``text``; else a
    ValueError naming ``where`` and the fix (chapter 6)."""
    starts, ends = text.count(README_START), text.count(README_END)
    if not starts or not ends:
        raise ValueError(
            f"{where} has no benchmark section (the lines {README_START!r} and "
            f"{README_END!r})"
        )
    if starts > 1 or ends > 1 or text.count(MARKER_PREFIX) > 2:
        raise ValueError(
            f"{where} has {starts} benchmark start and {ends} end markers; keep "
            "exactly one of each around the results section"
        )
    if text.index(README_END) < text.index(README_START):
        raise ValueError(
            f"{where}: the benchmark end marker comes before the start marker; put "
            f"{README_START!r} first"
        )


def readme_with_results(text: str, results: dict, where: str = "README") -> str:
    """``text`` with its marked results section rewritten from ``results``
    (chapter 6)."""
    check_readme_markers(text, where)
    body = results_markdown(results)
    if results.get("command"):
        body = f"Measured by `{results['command']}`.\n\n" + body
    if MARKER_PREFIX in body:  # would leave a second marker in the README for good
        raise ValueError(
            f"the results hold the text {MARKER_PREFIX!r} (a README marker); remove it "
            "from the command line or the merged files"
        )
    return re.sub(
        re.escape(README_START) + r".*?" + re.escape(README_END),
        lambda _: README_START + "\n" + body + README_END,
        text,
        flags=re.S,
    )


def update_readme(readme: str | Path, results: dict) -> bool:
    """Rewrite the text between `README_START` and `README_END` with `results_markdown`
    (chapter 6).

    Returns True when the file changed. Raises ValueError when the markers are missing,
    repeated or reversed; the file is replaced whole, never half-written.
    """
    from ..io.paths import write_file

    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    new = readme_with_results(text, results, where=str(path))
    if new != text:
        write_file(path.resolve(), new)  # a link stays a link
    return new != text


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(results: dict, out: str | Path) -> dict[str, Path]:
    """Write the JSON, the two plots and the markdown table under `out`; return their
    paths (chapter 6).

    The JSON goes first, so what a run measured is kept even if a figure or the table
    then fails; each file is made in memory and written whole.
    """
    from ..io.paths import write_file
    from .plots import plot_adaptation, plot_learning_curves

    out = Path(out)
    make = {
        "json": lambda: json.dumps(results, indent=1) + "\n",
        "table": lambda: results_markdown(results),
        "adaptation": lambda: _png(plot_adaptation(results)),
        "curves": lambda: _png(plot_learning_curves(results)),
    }
    paths = {key: out / name for key, name in OUTPUTS.items()}
    for key, data in make.items():
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        write_file(paths[key], data())
    return paths


def load_results(path: str | Path) -> dict:
    """A benchmark JSON (chapter 6)."""
    return json.loads(Path(path).read_text())


#: JSON's names for the Python types ``json.loads`` returns.
_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number"}
_JSON_KINDS.update({float: "number", bool: "boolean", type(None): "null"})


#: The smallest sections that exercise every table and figure that reads two sections
#: together (our PPO beside SB3's peers, and their time-to-solve speed row).
_SOLVED = {"solved": True, "solved_at_seconds": 1.0, "solved_at_steps": 1}
_STUBS = {
    "our_ppo": {
        "summary": {
            "solved": 1,
            "seeds": 1,
            "median_solve_steps": 1,
            "median_solve_seconds": 1.0,
        },
        "runs": [_SOLVED],
    },
    "peers": {
        "library": "",
        "hyperparameters": "",
        "summary": {},
        "runs": [{**_SOLVED, "algorithm": "sb3_ppo"}],
    },
    "speed": {"rows": [{"name": "", "ratio": {"mean": 1.0}}]},
}


def check_results(results, where: str) -> None:
    """Raise a ValueError naming ``where`` unless ``results`` has the shape of a
    benchmark JSON: an object with at least one section, whose tables and figures can be
    made (chapter 6)."""
    import matplotlib.pyplot as plt

    from .plots import plot_adaptation, plot_learning_curves

    fix = "pass a benchmark_results.json written by python -m ssm_metarl benchmark"
    names = [s for protocol in PROTOCOLS for s in SECTIONS[protocol]]
    if not isinstance(results, dict):
        kind = _JSON_KINDS.get(type(results), type(results).__name__)
        raise ValueError(f"{where} holds a JSON {kind}, not a benchmark object; {fix}")
    if not any(name in results for name in names):
        raise ValueError(f"{where} has none of the sections {names}; {fix}")
    kinds = {"merged": dict, "seconds": dict, "protocols": list, "command": str}
    for name, kind in {**dict.fromkeys(names, dict), **kinds}.items():
        if results.get(name) is not None and not isinstance(results[name], kind):
            raise ValueError(
                f"{where}: its {name!r} is not a JSON {_JSON_KINDS[kind]}; {fix}"
            )
    earlier = results.get("merged") or {}
    if not all(isinstance(run, dict) for run in earlier.values()):
        raise ValueError(f"{where}: its 'merged' runs are not JSON objects; {fix}")
    if not all(isinstance(p, str) for p in results.get("protocols") or ()):
        raise ValueError(f"{where}: its 'protocols' are not names; {fix}")
    # what the run makes from it after its work, beside the sections a run can add
    # (the tables and figures read our_ppo and peers together): make it now
    beside = {**{k: v for k, v in _STUBS.items() if k not in results}, **results}
    try:
        results_markdown(beside)
        for plot in (plot_adaptation, plot_learning_curves):
            plt.close(plot(beside))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"{where}: its sections do not have the benchmark's shape "
            f"({type(exc).__name__}: {exc}); {fix}"
        ) from None

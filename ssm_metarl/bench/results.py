"""Chapter 6's benchmark results file and what is made from it: the markdown tables,
the README's results section and the figure.

``benchmark_results.json`` holds one section per measured protocol (`SECTIONS`). From it
come ``tables/benchmark_results.md``, the plot and, between `README_START` and
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
    "peers_for_card",
    "results_markdown",
    "readme_with_results",
    "update_readme",
    "write_outputs",
    "load_results",
    "check_results",
]

#: What ``--protocol`` runs: ``card`` (the seed card's protocol on CartPole-v1),
#: ``strong`` (the card's settings and more on goal test tasks, five trained models per
#: method), ``peers`` (the shipped peers run's tables, beside the results store) and
#: ``speed`` (the ``bench`` speed ratios, small sizes).
PROTOCOLS = ("card", "strong", "peers", "speed")
#: JSON sections each protocol writes (``--merge`` keeps an earlier run's sections this
#: run did not measure).
SECTIONS = {name: (name,) for name in PROTOCOLS}
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


def peers_for_card(peers: dict | None) -> dict | None:
    """The peers section's SB3 rows in the shape the card table reads (chapter 6)."""
    if not peers:
        return None
    return {
        r["agent"]: {"final": r["final"], "seeds": r["seeds"], "budget": r["budget"]}
        for r in peers.get("cartpole", [])
    }


def results_markdown(results: dict) -> str:
    """The results as markdown tables (chapter 6): the card's table matched setting
    for setting, the strong protocol's rows, the peers run, and the speed figures."""
    from .card_protocol import CARD_TABLE_COLUMNS, card_table
    from .peers_markdown import peers_lines, speed_lines

    lines = []
    card, strong = results.get("card"), results.get("strong")
    if card:
        lines += [
            f"**The card's rows** (card protocol: {card['what']}; strong protocol: "
            "the same setting on goal test tasks)",
            "",
            "| " + " | ".join(CARD_TABLE_COLUMNS) + " |",
            "|" + "---|" * len(CARD_TABLE_COLUMNS),
        ]
        for row in card_table(card, strong, peers_for_card(results.get("peers"))):
            lines.append("| " + " | ".join(row[c] for c in CARD_TABLE_COLUMNS) + " |")
        lines.append("")
    if strong:
        lines += [
            f"**Strong protocol** ({strong['what']})",
            "",
            "| row | mean [95% CI] | IQM [95% CI] |",
            "|---|---|---|",
        ]
        for row in strong["rows"]:
            lines.append(
                f"| {row['name']} | {_fmt(row['ci'])} | {_fmt(row.get('iqm'))} |"
            )
        lines.append("")
    if results.get("peers"):
        lines += peers_lines(results["peers"])
    if results.get("speed"):
        lines += speed_lines(results["speed"])
    return "\n".join(lines).rstrip() + "\n"


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
    """Write the JSON, the plot and the markdown table under `out`; return their
    paths (chapter 6).

    The JSON goes first, so what a run measured is kept even if a figure or the table
    then fails; each file is made in memory and written whole.
    """
    from ..io.paths import write_file
    from .plots import plot_adaptation

    out = Path(out)
    make = {
        "json": lambda: json.dumps(results, indent=1) + "\n",
        "table": lambda: results_markdown(results),
        "adaptation": lambda: _png(plot_adaptation(results)),
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


def check_results(results, where: str) -> None:
    """Raise a ValueError naming ``where`` unless ``results`` has the shape of a
    benchmark JSON: an object with at least one section, whose tables and figures can be
    made (chapter 6)."""
    import matplotlib.pyplot as plt

    from .plots import plot_adaptation

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
    # what the run makes from it after its work: make it now
    try:
        results_markdown(results)
        plt.close(plot_adaptation(results))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"{where}: its sections do not have the benchmark's shape "
            f"({type(exc).__name__}: {exc}); {fix}"
        ) from None

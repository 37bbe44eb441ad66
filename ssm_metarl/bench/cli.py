"""Chapter 6's benchmark command:
``python -m ssm_metarl benchmark --protocol ... --out DIR``.

Runs the chosen protocols and writes ``DIR/benchmark_results.json``, its figure and
its table (:mod:`ssm_metarl.bench.results`), all from the run it just made; ``--merge``
keeps the sections earlier runs measured, ``--ship`` writes a copy of the JSON and
``--readme`` rewrites the README's marked results section. Every flag is checked before
the protocols run (minutes to an hour): the paths, the merged files (JSON of the
benchmark's shape, no README marker inside) and the README's markers. Taught in
chapter 6 (``06_benchmarks``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from .results import (
    OUTPUTS,
    PROTOCOLS,
    README_END,
    README_START,
    SECTIONS,
    load_results,
    results_markdown,
    update_readme,
    write_outputs,
)

__all__ = [
    "add_parsers",
    "cmd_benchmark",
    "check_benchmark",
    "run_protocols",
    "merge_earlier",
    # the results file's names (bench.results), importable from here as before
    "PROTOCOLS",
    "SECTIONS",
    "README_START",
    "README_END",
    "OUTPUTS",
    "results_markdown",
    "update_readme",
    "write_outputs",
    "load_results",
]


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
    run_protocols(args, results, say)
    results["seconds"]["total"] = round(time.perf_counter() - start, 1)
    earlier = getattr(args, "merged", None)  # read by check_benchmark
    if earlier is None:
        earlier = [load_results(path) for path in args.merge or ()]
    merge_earlier(results, earlier)
    paths = write_outputs(results, args.out)
    if args.ship:
        from ..io.paths import write_file

        paths["shipped"] = write_file(args.ship, paths["json"].read_bytes())
    if args.readme:
        update_readme(args.readme, results)
    for path in paths.values():
        print(path)
    return 0


def run_protocols(args: argparse.Namespace, results: dict, say) -> None:
    """Run the protocols ``args.protocol`` names, adding each one's sections and seconds
    to ``results`` (chapter 6)."""
    if "card" in args.protocol or "strong" in args.protocol:
        from .card_protocol import card_protocol

        t = time.perf_counter()
        results["card"] = card_protocol(seed=args.seed, progress=not args.quiet)
        results["seconds"]["card"] = round(time.perf_counter() - t, 1)
        say(f"card protocol: {results['seconds']['card']} s")
    if "strong" in args.protocol:
        from .strong_protocol import strong_protocol

        t = time.perf_counter()
        results["strong"] = strong_protocol(runs=args.seeds, progress=not args.quiet)
        results["seconds"]["strong"] = round(time.perf_counter() - t, 1)
        say(f"strong protocol: {results['seconds']['strong']} s")
    if "peers" in args.protocol:
        from ..protocol.store import Results
        from .peers_report import peers_summary

        t = time.perf_counter()
        run = getattr(args, "peers_loaded", None)  # read by check_benchmark
        if run is None:
            run = load_results(args.peers_run)
        maml = Results.load().matrix("goal_sharp", "maml", "held_out", k=1)
        results["peers"] = peers_summary(run, maml)
        results["seconds"]["peers"] = round(time.perf_counter() - t, 1)
    if "speed" in args.protocol:
        from .speed_section import speed_section

        t = time.perf_counter()
        results["speed"] = speed_section(seed=args.seed, progress=say)
        results["seconds"]["speed"] = round(time.perf_counter() - t, 1)


def merge_earlier(results: dict, earlier_runs: list[dict]) -> dict:
    """Add to ``results`` the sections of earlier runs it did not measure, each with the
    command that measured it under ``results["merged"]``, in the order to rerun them
    (chapter 6)."""
    for earlier in earlier_runs:
        merged = results.setdefault("merged", {})
        before_runs = earlier.get("merged") or {}
        for protocol in PROTOCOLS:
            for section in SECTIONS[protocol]:
                if section in earlier and section not in results:
                    results[section] = earlier[section]
                    # merged into the earlier run: keep its origin
                    before = before_runs.get(section)
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
                            "seconds": (earlier.get("seconds") or {}).get("total"),
                        }
        # runs before the earlier run first, in its order: the rerun order
        order = list(before_runs)
        results["merged"] = dict(
            sorted(
                merged.items(),
                key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order),
            )
        )
    return results


def check_benchmark(args: argparse.Namespace) -> None:
    """Every flag of ``benchmark``, before any protocol runs: numbers, ``--out``, the
    ``--merge`` files (read here, once), ``--ship`` and ``--readme`` (chapter 6)."""
    import importlib.util
    from pathlib import Path

    from ..io.paths import (
        check_out_dir,
        check_ship_file,
        read_user_json,
        read_user_text,
    )
    from ..io.validation import check_int
    from .results import MARKER_PREFIX, check_readme_markers, check_results

    for flag in ("threads", "seeds"):
        check_int(f"--{flag}", getattr(args, flag))
    check_int("--seed", args.seed, minimum=0)
    from .strong_rows import RUNS

    if args.seeds > RUNS:
        raise ValueError(
            f"--seeds must be at most {RUNS} (the replicated models of each method), "
            f"got {args.seeds}"
        )
    names = args.protocol
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"--protocol names {', '.join(twice)} twice; name each once")
    check_out_dir("--out", args.out, files=tuple(OUTPUTS.values()))
    needs = sorted({"strong"} & set(args.protocol))
    if needs and importlib.util.find_spec("rliable") is None:
        raise ValueError(
            f"--protocol {' '.join(needs)} needs rliable: pip install "
            "'ssm-metarl[bench]'"
        )
    args.peers_loaded = None
    if "peers" in args.protocol:
        args.peers_loaded = read_user_json("--peers_run", args.peers_run)
        if not isinstance(args.peers_loaded, dict) or not isinstance(
            args.peers_loaded.get("runs"), list
        ):
            raise ValueError(
                f"--peers_run {args.peers_run} is not a peers run (no list of "
                "'runs'); pass the peers.json written by python -m ssm_metarl peers"
            )
    args.merged = []
    for name in args.merge or ():
        text = read_user_text("--merge", name)
        if MARKER_PREFIX in text:  # it would end up in the README twice
            raise ValueError(
                f"--merge {name} holds a README benchmark marker ({MARKER_PREFIX!r}); "
                "merge a benchmark_results.json, not a README"
            )
        earlier = read_user_json("--merge", name)
        check_results(earlier, f"--merge {name}")
        args.merged.append(earlier)
    if args.ship is not None:
        args.ship = check_ship_file("--ship", args.ship)
    if args.readme is not None:
        if MARKER_PREFIX in " ".join(args.argv or ()):
            raise ValueError(
                f"the command line holds {MARKER_PREFIX!r}; the README section quotes "
                "the command, so it would carry a second marker"
            )
        check_readme_markers(read_user_text("--readme", args.readme), args.readme)
        readme = check_ship_file("--readme", args.readme)
        if args.ship is not None and Path(args.ship).resolve() == readme.resolve():
            raise ValueError("--ship and --readme name the same file; name two files")
        args.readme = readme


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
            "card: the seed card's protocol; strong: card + the same settings on goal "
            "test tasks, five trained models per method (bench extra); peers: the "
            "peers run's tables; speed: the bench speed ratios"
        ),
    )
    bench.add_argument("--out", required=True, help="output directory")
    bench.add_argument(
        "--seeds",
        type=int,
        default=5,
        help=(
            "strong: training runs per method, the replicated models in "
            "models/replication (default: 5, all of them)"
        ),
    )
    bench.add_argument(
        "--peers_run",
        default="models/peers/peers.json",
        help=(
            "peers: the peers run to summarise, written by python -m ssm_metarl peers "
            "(default: %(default)s)"
        ),
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
        help=(
            "also write the JSON here (e.g. models/benchmark_results.json); its "
            "folder must exist; a link is followed and the file it points to replaced"
        ),
    )
    bench.add_argument(
        "--readme",
        default=None,
        help=(
            "rewrite this README's results section (between its one start and one end "
            "marker)"
        ),
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=cmd_benchmark, check=check_benchmark)

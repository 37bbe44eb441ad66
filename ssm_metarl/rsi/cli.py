"""Command line of chapter 5: ``python -m ssm_metarl rsi`` (the loop) and ``rsi-worker``
(one more pair of hands).

``rsi --cycles 3 --out runs/rsi1`` needs nothing else running: the Optuna study lives in
a journal file in the run directory. ``--workers N`` starts N local ``rsi-worker``
processes on the same file; on a cluster, start the workers yourself with a PostgreSQL
or MySQL URL as ``--storage``: that URL is the only change. Flags are built from
`RSIConfig`. Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

# check_rsi, check_worker: argument checks
__all__ = ["add_parsers", "cmd_rsi", "cmd_rsi_worker"]

log = logging.getLogger(__name__)

_ROW = (
    "{cycle:>5}  {validation:>7.1f}  {best:>22}  {decision:<8}  {test:>7.1f}  "
    "{seconds:>5.0f}"
)


def _row(report) -> str:
    scored = [c for c in report.candidates if c.get("improvement")]
    best = max(scored, key=lambda c: c["improvement"]["mean"], default=None)
    text = (
        "none scored"
        if best is None
        else "{mean:+.1f} [{low:+.1f}, {high:+.1f}]".format(**best["improvement"])
    )
    return _ROW.format(
        cycle=report.cycle,
        validation=report.validation["mean"],
        best=text,
        decision="accepted" if report.accepted is not None else "kept",
        test=report.test["mean"],
        seconds=report.seconds,
    )


def _initial(args):
    """The model to start from and its adaptation step size (from its card when it is a
    shipped artifact)."""
    from pathlib import Path

    from ..io.artifacts import artifact_path, load_card
    from ..models.ssm import StateSpaceModel

    path = (
        Path(args.model)
        if args.model.endswith(".pth") and Path(args.model).exists()
        else None
    )
    if path is None:
        path = artifact_path(
            args.model if args.model.endswith(".pth") else args.model + ".pth"
        )
    inner_lr = args.inner_lr
    if inner_lr is None:
        try:
            inner_lr = load_card(path.stem).get("adaptation_lr")
        except (FileNotFoundError, ValueError):
            inner_lr = None
    return StateSpaceModel.load(path), float(inner_lr or 0.01), path


def _worker_command(storage: str, study: str, threads: int | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ssm_metarl",
        "rsi-worker",
        "--storage",
        storage,
        "--study",
        study,
        "--threads",
        str(threads or 1),
        "--idle-exit",
        "300",
    ]


def _config(args: argparse.Namespace):
    from dataclasses import fields

    from .search import RSIConfig

    return RSIConfig(
        **{
            f.name: getattr(args, f.name)
            for f in fields(RSIConfig)
            if hasattr(args, f.name)
        }
    )


def check_rsi(args: argparse.Namespace) -> None:
    """Every `rsi` argument checked before any work: a ValueError becomes a one-line
    usage error."""
    _config(args)
    for name, minimum in (("cycles", 1), ("workers", 0), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be >= {minimum}, got {value}")
    if args.inner_lr is not None and not args.inner_lr > 0:
        raise ValueError(f"--inner_lr must be a positive number, got {args.inner_lr}")


def check_worker(args: argparse.Namespace) -> None:
    """`rsi-worker`'s numbers checked before it opens the study."""
    for name in ("threads", "max_trials", "idle_exit"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(
                f"--{name.replace('_', '-') if name != 'threads' else name} must be "
                f"positive, got {value}"
            )


def cmd_rsi(args: argparse.Namespace) -> int:
    """Run `--cycles` cycles of self-improvement; write the run directory (and an
    artifact with `--ship`); chapter 5."""
    import platform
    import shlex
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from ..report.progress import progress_bar
    from ..report.stats import bootstrap_ci
    from .agent import RecursiveSelfImprovementAgent, RSIHalted

    config = _config(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, inner_lr, source = _initial(args)
    agent = RecursiveSelfImprovementAgent(
        model,
        config.family,
        config=config,
        inner_lr=inner_lr,
        run_dir=args.out,
        storage=args.storage,
        study=args.study,
        inline=args.workers == 0,
        resume=not args.no_resume,
    )
    workers = [
        subprocess.Popen(_worker_command(agent.storage, agent.study_name, args.threads))
        for _ in range(args.workers)
    ]
    start, done = time.perf_counter(), len(agent.history)
    print(
        _ROW.replace(":>7.1f", ":>7")
        .replace(":>5.0f", ":>5")
        .format(
            cycle="cycle",
            validation="valid.",
            best="best improvement [CI]",
            decision="decision",
            test="test",
            seconds="sec",
        )
    )
    try:
        for _ in progress_bar(
            range(done, args.cycles), enabled=not args.quiet, desc="rsi cycles"
        ):
            print(_row(agent.improve()), flush=True)
    except RSIHalted as exc:
        print(f"halted by the safety monitor: {exc}")
    finally:
        agent.finish()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.terminate()
    seconds = time.perf_counter() - start
    if args.ship:
        out = Path(args.ship)
        first, last = agent.history[0], agent.history[-1]
        card = {
            "name": out.stem,
            "command": "python -m ssm_metarl "
            + " ".join(shlex.quote(a) for a in args.argv),
            "created_by": "ssm_metarl.cli rsi",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "kind": "StateSpaceModel",
            "model_config": asdict(agent.current_model.config),
            "parameters": sum(p.numel() for p in agent.current_model.parameters()),
            "adaptation_lr": agent.current.inner_lr,
            "initial_model": source.name,
            "initial_inner_lr": inner_lr,
            "rsi_config": config.to_dict(),
            "cycles": len(agent.history),
            "workers": args.workers,
            "storage": (
                "Optuna journal file in the run directory, shared by local worker "
                "processes"
            ),
            "wall_seconds": seconds,
            "halted": agent.halted,
            "accepted_cycles": [
                r.cycle for r in agent.history if r.accepted is not None
            ],
            "test_gain_first_to_last": bootstrap_ci(
                [b - a for a, b in zip(first.test_returns, last.test_returns)]
            ).to_dict(),
            "history": [r.to_dict() for r in agent.history],
        }
        agent.current_model.save(
            out.with_suffix(".pth"),
            extra={"inner_lr": agent.current.inner_lr},
            card=card,
        )
        print(f"wrote {out.with_suffix('.pth')} and {out.with_suffix('.json')}")
    print(
        f"{len(agent.history)} cycle(s) in {seconds:.0f} s; history in "
        f"{agent.run_dir / 'history.json'}"
    )
    return 0


def cmd_rsi_worker(args: argparse.Namespace) -> int:
    """Work on a shared study's proposals until its run finishes (or none comes for
    --idle-exit s); chapter 5."""
    import torch

    from .search import run_worker

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    done = run_worker(
        args.storage, args.study, idle_exit=args.idle_exit, max_trials=args.max_trials
    )
    log.info("rsi-worker ran %d trial(s)", done)
    return 0


def add_parsers(sub, add_config_flags) -> None:
    """Register `rsi` and `rsi-worker` on the main parser's subcommands (chapter 5)."""
    from .search import RSIConfig

    rsi = sub.add_parser(
        "rsi",
        help=(
            "recursive self-improvement: propose (Optuna), train, keep only "
            "CI-separated gains"
        ),
        description=__doc__.splitlines()[0],
    )
    add_config_flags(rsi, RSIConfig, added=set())
    rsi.add_argument(
        "--cycles",
        type=int,
        default=3,
        help="cycles to run in all (a resumed run counts its own)",
    )
    rsi.add_argument(
        "--out",
        required=True,
        help="run directory: agent.pt, history.json, archive/, study.log",
    )
    rsi.add_argument(
        "--model",
        default="cartpole_goal_maml",
        help="shipped artifact name or .pth path to start from",
    )
    rsi.add_argument(
        "--inner_lr",
        type=float,
        default=None,
        help="its adaptation step size (default: from its card)",
    )
    rsi.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: journal:OUT/study.log)",
    )
    rsi.add_argument("--study", default="rsi", help="Optuna study name (default: rsi)")
    rsi.add_argument(
        "--workers",
        type=int,
        default=0,
        help="local rsi-worker processes (0: work in this process)",
    )
    rsi.add_argument(
        "--threads", type=int, default=None, help="torch threads per process"
    )
    rsi.add_argument(
        "--ship",
        default=None,
        help="also write the final model and its card, e.g. models/NAME",
    )
    rsi.add_argument(
        "--no-resume",
        dest="no_resume",
        action="store_true",
        help="start afresh even if OUT has a run",
    )
    rsi.add_argument("--quiet", action="store_true", help="no progress bar")
    rsi.set_defaults(func=cmd_rsi, check=check_rsi)

    worker = sub.add_parser(
        "rsi-worker",
        help="train and score proposals from a shared Optuna study",
        description="One worker of chapter 5's loop; start many, on one machine or "
        "many.",
    )
    worker.add_argument(
        "--storage",
        required=True,
        help="the study's storage URL (journal:PATH or an RDB URL)",
    )
    worker.add_argument("--study", required=True, help="the study's name")
    worker.add_argument("--threads", type=int, default=None, help="torch threads")
    worker.add_argument(
        "--idle-exit",
        dest="idle_exit",
        type=float,
        default=None,
        help="exit after this many seconds without a proposal to work on",
    )
    worker.add_argument(
        "--max-trials",
        dest="max_trials",
        type=int,
        default=None,
        help="exit after this many trials",
    )
    worker.set_defaults(func=cmd_rsi_worker, check=check_worker)

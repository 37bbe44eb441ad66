"""Command line of chapter 5: ``python -m ssm_metarl rsi`` (the loop) and ``rsi-worker``
(one more pair of hands).

``rsi --cycles 3 --out runs/rsi1`` needs nothing else running: the Optuna study lives in
a journal file in the run directory. ``--workers N`` starts N local ``rsi-worker``
processes on the same file. On several machines, give the coordinator and every worker
the same PostgreSQL URL as ``--storage``, with the password in the environment. Every
flag is checked before any work (`ssm_metarl.rsi.checks`); a failure during the run
ends in one line. Flags are built from `RSIConfig`. Taught in chapter 5
(`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import time

from .checks import check_rsi, check_worker
from .messages import damaged, header, interrupted, one_line, row

__all__ = ["add_parsers", "cmd_rsi", "cmd_rsi_worker"]

log = logging.getLogger(__name__)


def local_timeout(stale_seconds: float) -> float:
    """How long a local worker waits for a silent coordinator before it stops: long
    beside the coordinator's beat (every stale_seconds / 6 at most), short enough
    that a killed coordinator leaves no orphans for long."""
    return min(120.0, max(10.0, 2 * stale_seconds))


def _stop_on_sigterm() -> None:
    """SIGTERM ends the process like Ctrl-C: cleanly, through the same handlers."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _worker_command(
    storage: str, study: str, threads: int | None, timeout: float
) -> list[str]:
    """A local worker's command line: the storage URL as given (a password never is:
    the workers read it from the environment they inherit)."""
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
        "--coordinator-timeout",
        f"{timeout:g}",
    ]


def cmd_rsi(args: argparse.Namespace) -> int:
    """Run `--cycles` cycles of self-improvement; write the run directory (and an
    artifact with `--ship`); chapter 5."""
    import torch

    from .agent import RecursiveSelfImprovementAgent, RSIHalted
    from .checks import config_from
    from .ship import ship
    from .state import RunStateError, load_state
    from .storage import StorageError

    _stop_on_sigterm()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base = load_state(args.out).config if args.resuming else None
    workers, agent, start = [], None, time.perf_counter()
    try:
        agent = RecursiveSelfImprovementAgent(
            args.start_model,  # None when resuming: the run has its own
            config_from(args, base).family,
            config=config_from(args, base),
            inner_lr=args.start_lr or 0.01,
            run_dir=args.out,
            storage=args.storage,
            study=args.study,
            inline=args.workers == 0,
            resume=not args.no_resume,
        )
        url = agent.where.url if agent.where.kind == "journal" else args.storage
        command = _worker_command(
            url,
            agent.study_name,
            args.threads,
            local_timeout(agent.config.stale_seconds),
        )
        workers = [subprocess.Popen(command) for _ in range(args.workers)]
        done = len(agent.history)
        print(header(), flush=True)
        from ..report.progress import progress_bar

        for _ in progress_bar(
            range(done, args.cycles), enabled=not args.quiet, desc="rsi cycles"
        ):
            print(row(agent.improve()), flush=True)
    except RSIHalted as exc:
        print(f"halted by the safety monitor: {exc}", flush=True)
    except KeyboardInterrupt:
        print(interrupted(agent), file=sys.stderr)
        return 130
    except (StorageError, RunStateError, OSError) as exc:
        print(f"rsi: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:  # a journal damaged while the run went on
        where = agent.where if agent is not None else None
        print(f"rsi: error: {damaged(where, exc)}", file=sys.stderr)
        return 1
    finally:
        _stop(agent, workers)
    seconds = time.perf_counter() - start
    if args.ship:
        try:
            written = ship(agent, args, seconds)
        except (OSError, RuntimeError) as exc:
            print(f"rsi: error: --ship {args.ship}: {one_line(exc)}", file=sys.stderr)
            return 1
        print(f"wrote {written} and {written.with_suffix('.json')}")
    print(
        f"{len(agent.history)} cycle(s) in {seconds:.0f} s; history in "
        f"{agent.run_dir / 'history.json'}"
    )
    return 0


def _stop(agent, workers) -> None:
    """Tell the workers the run is over, then wait for them (30 s) before ending
    them."""
    if agent is not None:
        try:
            agent.finish()
        except Exception as exc:  # the run is saved; telling the workers is a courtesy
            log.warning("could not mark the run finished: %s", one_line(exc))
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.terminate()
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()


def cmd_rsi_worker(args: argparse.Namespace) -> int:
    """Work on a shared study's proposals until its run finishes, its coordinator is
    gone, or none comes for --idle-exit s; chapter 5."""
    import torch

    from .storage import StorageError
    from .worker import run_worker

    _stop_on_sigterm()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        report = run_worker(
            args.storage,
            args.study,
            idle_exit=args.idle_exit,
            max_trials=args.max_trials,
            coordinator_timeout=args.coordinator_timeout,
        )
    except KeyboardInterrupt:
        print("rsi-worker: stopped; its running trial was given back", file=sys.stderr)
        return 130
    except (StorageError, OSError) as exc:
        print(f"rsi-worker: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:  # a journal damaged while the worker ran
        from .storage import parse_storage

        print(
            f"rsi-worker: error: {damaged(parse_storage(args.storage), exc)}",
            file=sys.stderr,
        )
        return 1
    print(f"rsi-worker: {report.reason}; ran {report.trials} trial(s)", file=sys.stderr)
    return 0


def add_parsers(sub, add_config_flags) -> None:
    """Register `rsi` and `rsi-worker` on the main parser's subcommands (chapter 5)."""
    from .search import RSIConfig
    from .storage import FORMS

    rsi = sub.add_parser(
        "rsi",
        help=(
            "recursive self-improvement: propose (Optuna), train on, keep only "
            "gains the sign-flip test finds"
        ),
        description=__doc__.splitlines()[0] + " Storage URLs: " + FORMS + ".",
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
        default=None,
        help="shipped artifact name or .pth path to start from (default: "
        "cartpole_goal_maml; a .pth reads its step size from the .json beside it)",
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
        help="where the workers meet (default: journal:OUT/study.log): " + FORMS,
    )
    rsi.add_argument("--study", default=None, help="Optuna study name (default: rsi)")
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
        "many. Storage URLs: " + FORMS + ".",
    )
    worker.add_argument(
        "--storage", required=True, help="the study's storage URL: " + FORMS
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
    worker.add_argument(
        "--coordinator-timeout",
        dest="coordinator_timeout",
        type=float,
        default=120.0,
        help="stop when no coordinator has beaten for this many seconds (default: "
        "120; a coordinator resumed sooner finds its workers still there)",
    )
    worker.set_defaults(func=cmd_rsi_worker, check=check_worker)

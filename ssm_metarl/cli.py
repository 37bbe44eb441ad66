"""Command line: ``python -m ssm_metarl COMMAND``, a thin layer over the package
(``train``, ``bench``, ``incontext``, ``rsi``, ``rsi-worker``, ``benchmark``).

Each command lives beside the part of the book it serves: ``train`` in
:mod:`ssm_metarl.meta.cli` (chapter 3), ``incontext`` in :mod:`ssm_metarl.adapt.cli`
(chapter 4), ``rsi`` and ``rsi-worker`` in :mod:`ssm_metarl.rsi.cli` (chapter 5),
``benchmark`` in :mod:`ssm_metarl.bench.cli` (chapter 6). This module builds their flags
from the config dataclasses, so every default exists once, in its dataclass, and adds
``bench``, the speed benchmarks. Every artifact's command is in its card; the book's
appendix lists them all.

Every argument is checked before any work starts (a subcommand's ``check`` default): a
bad value, an unusable path or a resume file that does not fit is an argparse error
(one line, exit 2). A failure met during the work that the user can act on (a file
missing or unreadable, a full disk, a damaged checkpoint, a missing optional package)
ends in one line ``error: ...`` naming it (exit 1), and Ctrl-C in one line saying what
was kept (exit 130). ``SSM_METARL_DEBUG=1`` shows the full traceback instead. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import functools
import inspect
import json
import logging
import os
import re
import sys
from dataclasses import MISSING, fields

__all__ = ["main", "build_parser", "failure_line", "DEBUG_ENV"]

#: Set this environment variable to 1 to see the traceback behind a one-line error.
DEBUG_ENV = "SSM_METARL_DEBUG"
#: The largest ``--seed`` (2**32 - 1, numpy's legacy bound).
SEED_MAX = 2**32 - 1
#: Optional packages and the extra that installs each.
EXTRAS = {
    "optuna": "rsi",
    "psycopg": "rsi",
    "psycopg2": "rsi",
    "stable_baselines3": "bench",
    "sb3_contrib": "bench",
}


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import speed as benchmark

    result = getattr(benchmark, f"bench_{args.name}")(args)
    print(json.dumps(result, indent=2))
    return 0


def check_bench(args: argparse.Namespace) -> None:
    from .bench import speed as benchmark
    from .io.validation import check_int

    if args.name not in benchmark.available():
        raise ValueError(
            f"unknown benchmark {args.name!r}; choose one of {benchmark.available()}"
        )
    check_int("--seed", args.seed, minimum=0)


@functools.lru_cache(maxsize=None)  # the source of a class does not change
def _field_help(cls) -> dict[str, str]:
    """Each field's ``# comment`` in the dataclass source (trailing, or the lines just
    above it): its one-line meaning."""
    helps, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#:").strip())
            continue
        field = re.match(r"^\s+(\w+): [^=\n]+=[^#\n]+(?:#\s*(.+))?$", line)
        if field:
            helps[field.group(1)] = field.group(2) or " ".join(above)
        above = []
    return {name: text for name, text in helps.items() if text}


def _add_config_flags(
    parser: argparse.ArgumentParser, cls, names=None, note: str = "", added=None
) -> None:
    """One flag per field of ``cls`` (``names`` only, if given), typed and documented
    from the dataclass.

    Flags default to "not given" (SUPPRESS): the dataclass fills in its own default, so
    no default is typed twice. A field two configs share (``--inner_lr``) is added once.
    """
    comments = _field_help(cls)
    for f in fields(cls):
        if (names and f.name not in names) or f.name in added:
            continue
        added.add(f.name)
        default = f.default if f.default is not MISSING else None
        text = f"{comments.get(f.name, '')} ({note}default: {default})".strip()
        if isinstance(default, bool):
            parser.add_argument(
                f"--{f.name}", action="store_true", default=argparse.SUPPRESS, help=text
            )
        else:
            parser.add_argument(
                f"--{f.name}",
                type=type(default),
                default=argparse.SUPPRESS,
                help=text,
                **({"choices": _choices(f.name)} if _choices(f.name) else {}),
            )


def _choices(name: str):
    from .meta.maml import METHODS

    return METHODS if name == "mode" else None


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, with their flags and checks (appendix)."""
    from .adapt.cli import add_parsers as add_incontext  # chapter 4
    from .bench.cli import add_parsers as add_benchmark  # chapter 6
    from .bench.memory_cli import add_parsers as add_memory  # chapter 7
    from .bench.peers_cli import add_parsers as add_peers  # chapter 6
    from .meta.cli import add_parsers as add_train  # chapter 3
    from .protocol.cli import add_parsers as add_replicate  # chapters 3-4
    from .rsi.cli import add_parsers as add_rsi  # chapter 5
    from .rsi.measure_cli import add_parsers as add_rsi_measures  # chapter 5

    parser = argparse.ArgumentParser(
        prog="python -m ssm_metarl",
        allow_abbrev=False,
        description=__doc__.splitlines()[0],
        epilog=f"{DEBUG_ENV}=1 shows the traceback behind a one-line error.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress messages"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench", help="speed benchmarks measured side by side in one run"
    )
    bench.add_argument("name", help="which benchmark (e.g. ssm, rollout, rl, maml)")
    bench.add_argument("--seed", type=int, default=0)
    bench.set_defaults(func=cmd_bench, check=check_bench)
    add_train(sub, _add_config_flags)
    add_incontext(sub, _add_config_flags)
    add_replicate(sub)
    add_rsi(sub, _add_config_flags)
    add_rsi_measures(sub)
    add_benchmark(sub)
    add_peers(sub)
    add_memory(sub)
    for command in sub.choices.values():  # --epoch is not --epochs: no guessing
        command.allow_abbrev = False
    return parser


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or while handling."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def failure_line(exc: BaseException, args: argparse.Namespace | None = None):
    """The one line a failure the user can act on ends in, or None for a bug (whose
    traceback is shown). The appendix shows what the commands' errors look like."""
    full = [
        e for e in _chain(exc) if isinstance(e, OSError) and e.errno == errno.ENOSPC
    ]
    if full or isinstance(exc, OSError):
        error = full[0] if full else exc
        where = error.filename or getattr(args, "out", None) or "the output files"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"no space left on device: {where}"
        reason = error.strerror or type(error).__name__
        also = f" -> {error.filename2}" if error.filename2 else ""
        return f"{reason[0].lower()}{reason[1:]}: {where}{also}"
    if isinstance(exc, ModuleNotFoundError):
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        fix = f" (pip install 'ssm-metarl[{extra}]')" if extra else ""
        return f"{exc}{fix}"
    if isinstance(exc, json.JSONDecodeError):
        return f"a JSON file is not valid JSON ({exc})"
    if isinstance(exc, ValueError):  # the package's checks, CheckpointError included
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _debug() -> bool:
    """Whether ``SSM_METARL_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _interrupted(args: argparse.Namespace | None) -> str:
    """The one line printed on Ctrl-C (a command may say where its work is kept)."""
    if args is None or not getattr(args, "command", None):
        return "interrupted"
    hook = getattr(args, "interrupted", None)
    return hook(args) if hook else f"interrupted: {args.command} stopped"


def _check_seed(args: argparse.Namespace) -> None:
    """Every command's ``--seed``: an int in [0, 2**32 - 1] (torch, numpy and Gymnasium
    all take it, and the commands derive further seeds from it)."""
    from .io.validation import check_int

    if getattr(args, "seed", None) is not None:
        check_int("--seed", args.seed, minimum=0)
        if args.seed > SEED_MAX:
            raise ValueError(f"--seed must be at most {SEED_MAX}, got {args.seed}")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Run the command's checks; a failure is an argparse error (one line, exit 2)."""
    try:
        _check_seed(args)
        if getattr(args, "check", None) is not None:
            args.check(args)
    except (TypeError, ValueError, OSError) as exc:  # CheckpointError is a ValueError
        if _debug():
            raise
        message = failure_line(exc, args) if isinstance(exc, OSError) else str(exc)
        parser._subparsers._group_actions[0].choices[args.command].error(
            " ".join(message.split())
        )


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code: 0, 1 (error), 2 (usage) or 130
    (Ctrl-C). The appendix lists every command."""
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        # recorded verbatim in model cards
        args.argv = list(sys.argv[1:] if argv is None else argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(message)s",
        )
        _check(parser, args)
        return args.func(args)
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        # what is still buffered goes nowhere, not into a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        line = failure_line(exc, args)
        if line is None or _debug():
            raise
        # a path may hold a line break: the message stays one line
        print(
            "error: " + line.replace("\n", "\\n").replace("\r", "\\r"), file=sys.stderr
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

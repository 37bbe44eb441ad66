"""Every flag of ``rsi`` and ``rsi-worker`` checked before any work: a ValueError here
becomes a one-line argparse error (exit 2).

The starting model (``--model``), the run directory (``--out``), the artifact
(``--ship``), the storage URL and study (``--storage``, ``--study``) and, when a run is
resumed, every setting against the run's own (`ssm_metarl.rsi.run.resume_conflict`).
Chapter 5.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import fields
from pathlib import Path

from ..io.paths import check_out_dir, check_out_file, check_ship_file
from .run import resume_conflict, run_storage, weights_digest
from .search import RSIConfig
from .state import STATES, RunLock, has_state, load_state
from .storage import PASSWORD_ENV, check_journal, parse_storage

__all__ = ["check_rsi", "check_worker", "starting_model", "config_from", "ship_path"]

#: The model a fresh run starts from when --model is not given.
DEFAULT_MODEL = "cartpole_goal_maml"
#: Files a run directory may hold before its first save (a run killed that early).
RUN_FILES = {".lock", "study.log", "study.log.flock", "current", STATES, *("agent.pt",)}


def config_from(args: argparse.Namespace, base: dict | None = None) -> RSIConfig:
    """The RSIConfig of the flags given (the rest from `base`, else the defaults); a
    bad value names its flag. Chapter 5."""
    given = {
        f.name: getattr(args, f.name)
        for f in fields(RSIConfig)
        if hasattr(args, f.name)
    }
    try:
        return RSIConfig(**{**(base or {}), **given})
    except (TypeError, ValueError) as exc:
        raise ValueError(re.sub(r"^(\w+) must", r"--\1 must", str(exc))) from None


def given_flags(args: argparse.Namespace) -> bool:
    return any(hasattr(args, f.name) for f in fields(RSIConfig))


def starting_model(name: str | None, inner_lr: float | None):
    """(model, its adaptation step size, its source) for ``--model``: a shipped name
    reads its shipped card; a file reads the card beside it (``X.json`` for ``X.pth``),
    never a shipped card of the same name, and without one needs ``--inner_lr``.
    Chapter 5."""
    from ..io.artifacts import artifact_path
    from ..models.ssm import StateSpaceModel

    if name is not None and not name.strip():
        raise ValueError("--model must name a shipped model or a .pth file, got ''")
    name = name or DEFAULT_MODEL
    path = Path(name)
    is_file = name.endswith(".pth") or "/" in name or path.exists() or path.is_symlink()
    if is_file:
        if not path.exists():
            what = "a dangling symbolic link" if path.is_symlink() else "no such file"
            raise ValueError(f"--model {name}: {what}")
        if path.is_dir():
            raise ValueError(f"--model {name} is a directory; name a .pth file")
        card_path = path.with_suffix(".json")
    else:
        try:
            path = artifact_path(name + ".pth")
        except FileNotFoundError as exc:
            raise ValueError(f"--model {name}: no such shipped model ({exc})") from None
        card_path = path.with_suffix(".json")
    model = StateSpaceModel.load(path)  # a CheckpointError (ValueError): one line
    if model.config.input_dim != 4 or model.config.output_dim < 2:
        raise ValueError(
            f"--model {name} reads {model.config.input_dim} inputs and writes "
            f"{model.config.output_dim} outputs; a CartPole policy reads 4 and writes "
            "at least 2"
        )
    if inner_lr is None:
        if not card_path.is_file():
            raise ValueError(
                f"--model {name} has no card {card_path.name} beside it to give its "
                "adaptation step size; pass --inner_lr"
            )
        try:
            inner_lr = json.loads(card_path.read_text()).get("adaptation_lr")
        except (ValueError, AttributeError):
            raise ValueError(
                f"--model {name}: its card {card_path} is not a JSON card"
            ) from None
        if inner_lr is None:
            raise ValueError(
                f"--model {name}: its card {card_path.name} has no adaptation_lr; pass "
                "--inner_lr"
            )
    check_inner_lr(inner_lr)
    model.source = str(path)
    return model, float(inner_lr), path


def check_inner_lr(value) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"--inner_lr must be a positive finite number, got {value!r}")


def ship_path(name: str) -> Path:
    """``--ship models/NAME`` (or ``NAME.pth``) -> the ``.pth`` file it writes.
    Chapter 5."""
    return Path(name if name.endswith(".pth") else name + ".pth")


def check_storage(url: str, processes: int) -> None:
    """A storage URL that `processes` processes may share: no password in it (it would
    show in ``ps`` and be copied into files) and no SQLite for more than one."""
    where = parse_storage(url)
    if where.password_in_url:
        raise ValueError(
            "--storage holds a password, which would show in the process list and in "
            "files; give the URL without it and put the password in PGPASSWORD or "
            f"~/.pgpass (PostgreSQL) or in {PASSWORD_ENV}"
        )
    if where.kind == "sqlite" and processes > 1:
        raise ValueError(
            "--storage sqlite serves one process only: its file locking let two "
            "workers claim the same trial; use the default journal file (one machine) "
            "or PostgreSQL (several)"
        )
    return where


def check_study(name) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"--study must be a name of 1 to 200 characters, got {name!r}")
    if any(not c.isprintable() for c in name):
        raise ValueError(f"--study {name!r} holds unprintable characters")


def need_optuna() -> None:
    """The loop's proposer is the optional ``rsi`` extra: say how to install it."""
    try:
        import optuna  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"rsi needs Optuna ({exc.name} is missing): pip install 'ssm-metarl[rsi]'"
        ) from None


def check_rsi(args: argparse.Namespace) -> None:
    """Every `rsi` flag, before any work (chapter 5)."""
    need_optuna()
    args.start_model = args.start_path = args.start_lr = args.run_lock = None
    config_from(args)
    for name, minimum in (("cycles", 1), ("workers", 0), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be >= {minimum}, got {value}")
    if args.inner_lr is not None:
        check_inner_lr(args.inner_lr)
    if args.study is not None:
        check_study(args.study)
    if args.storage is not None:
        where = check_storage(args.storage, 1 + args.workers)
        if where.path is not None:  # a journal or SQLite file: a place to write it
            check_ship_file("--storage", str(where.path))
    out = check_out_dir("--out", args.out)
    if out.is_dir() and not has_state(out):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
        if foreign:
            raise ValueError(
                f"--out {args.out} holds files but no rsi run ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); name a new or empty directory"
            )
    try:  # held until the run ends: a second rsi on this --out is refused now
        args.run_lock = RunLock(out).acquire()
    except RuntimeError as exc:
        raise ValueError(f"--out {args.out}: {exc}") from None
    resuming = not args.no_resume and has_state(out)
    model = None
    if not resuming or args.model is not None:
        model, args.start_lr, args.start_path = starting_model(
            args.model, args.inner_lr
        )
        args.start_model = model
    if args.ship is not None:
        if not args.ship.strip() or args.ship.strip() == ".pth":
            raise ValueError("--ship must name a file, e.g. models/NAME, got ''")
        ship = check_out_file("--ship", str(ship_path(args.ship)))
        if (
            args.start_path is not None
            and ship.resolve() == Path(args.start_path).resolve()
        ):
            raise ValueError(
                f"--ship {args.ship} would overwrite the starting model; name another "
                "file"
            )
    run_id = replaces = None
    if resuming:
        run_id, where = check_resume(args, out, model)
    else:
        where = parse_storage(args.storage or f"journal:{out.absolute() / 'study.log'}")
        if has_state(out):
            try:
                replaces = load_state(out).extra.get("run_id")
            except RuntimeError:
                pass
    own = where.masked == f"journal:{out.absolute() / 'study.log'}"
    if resuming or not own:  # a fresh run's own journal is made afresh
        check_study_free(where, args.study or "rsi", run_id, replaces)
    args.resuming = resuming


def check_study_free(where, name: str, run_id, replaces) -> None:
    """The study a run will use: reachable, this loop's kind, owned by this run (or by
    the run it replaces, or by none) and held by no live coordinator of another
    process. A study that does not exist yet is made by the run. Chapter 5."""
    from .session import rival
    from .storage import StorageError
    from .study import SharedStudy

    try:
        shared = SharedStudy(where, name, create=False, wait=0, timeout=10)
        notes, trials = shared.attrs(), len(shared.trials())
    except StorageError as exc:
        if str(exc).startswith("no study"):
            return
        raise ValueError(f"--storage: {exc}") from None
    owner, other = notes.get("run"), notes.get("coordinator")
    if rival(other, run_id, 60.0):
        raise ValueError(
            f"--study {name}: in use by a live coordinator ({other.get('process')}, "
            "run " + str(other.get("run")) + "); stop it, or use another --study"
        )
    ours = owner == run_id or (owner is None and not trials)
    if not ours and (owner is None or owner != replaces):
        raise ValueError(
            f"--study {name}: study {name!r} in {where.masked} holds another run "
            f"({trials} trials); use another --study, or delete it first: optuna "
            f"delete-study --storage URL --study-name {name}"
        )


def check_resume(args: argparse.Namespace, out: Path, model) -> None:
    """A resume repeats the run's settings: each flag given must equal the run's."""
    try:
        saved_ckpt = load_state(out)
    except RuntimeError as exc:  # damaged, foreign or older state: one line
        raise ValueError(f"--out {args.out}: {exc}") from None
    saved = {**saved_ckpt.extra, "config": saved_ckpt.config}
    where = None if args.storage is None else parse_storage(args.storage)
    problem = resume_conflict(
        saved,
        out,
        config=config_from(args, saved["config"]),
        initial=None if model is None else weights_digest(model),
        inner_lr=args.inner_lr,
        storage=None if where is None else where.masked,
        study=args.study,
    )
    if problem:
        raise ValueError(problem)
    if where is None and "***" in saved["storage"]:
        raise ValueError(
            f"the run in {out} uses {saved['storage']}: pass that storage again "
            "(--storage, password in the environment) to resume it"
        )
    where = where or parse_storage(run_storage(saved, out))
    if where.kind == "journal":
        try:
            check_journal(where.path)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None
    return saved["run_id"], where


def check_worker(args: argparse.Namespace) -> None:
    """`rsi-worker`'s flags before it opens the study (chapter 5)."""
    need_optuna()
    for name in ("threads", "max_trials", "idle_exit", "coordinator_timeout"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            flag = name if name == "threads" else name.replace("_", "-")
            raise ValueError(f"--{flag} must be a positive number, got {value}")
    check_study(args.study)
    where = check_storage(args.storage, 2)
    if where.kind == "journal":
        try:
            check_journal(where.path, must_exist=True)
        except RuntimeError as exc:
            raise ValueError(str(exc)) from None

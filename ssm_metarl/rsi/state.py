"""A run directory's state, written as one unit: ``agent.pt``, ``history.json`` and the
archive of accepted models change together or not at all.

Each save writes a whole new state directory, ``states/NNNNNN/`` (the archive's
unchanged models are hard links, so this costs one model file per accepted cycle), and
then swaps one symbolic link, ``current``, to point at it. Renaming a link over another
is atomic, so a kill at any moment leaves ``current`` at the last complete state, never
at a mixture. ``agent.pt``, ``history.json`` and ``archive`` in the run directory are
fixed links through ``current``. A full disk stops the save with one line saying so
(the previous state stays in place), and only one process at a time may use a run
directory (`RunLock`). Chapter 5.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from ..io.atomic import process_alive, save_json
from ..io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

__all__ = ["RunStateError", "RunLock", "save_state", "load_state", "has_state"]

log = logging.getLogger(__name__)

CURRENT = "current"  #: the link to the state in use
STATES = "states"  #: where every state directory lives
VIEWS = ("agent.pt", "history.json", "archive")  #: fixed links through ``current``


class RunStateError(RuntimeError):
    """A run directory that cannot be saved or read (a full disk, a damaged or foreign
    state, another process using it); the message names the path and the fix.
    Chapter 5."""


def _step(name: str) -> None:
    """A named point in a save (tests stop a process here to check that a kill at any
    point leaves a whole state)."""


def has_state(run_dir: Path) -> bool:
    """Whether `run_dir` holds a run: its ``current`` link (or a link that dangles,
    which `load_state` reports), or an ``agent.pt`` from an older version. Chapter 5."""
    run_dir = Path(run_dir)
    link = run_dir / CURRENT
    return (
        link.is_symlink()
        or link.exists()
        or (run_dir / STATES).is_dir()
        or (run_dir / "agent.pt").is_file()
    )


def load_state(run_dir: Path, kind: str = "RSIAgent") -> Checkpoint:
    """The run's current ``agent.pt`` (checked like every checkpoint), or a
    RunStateError saying what is wrong and how to start afresh. Chapter 5."""
    run_dir = Path(run_dir)
    link = run_dir / CURRENT
    fresh = "start afresh with --no-resume (or another --out)"
    if not link.is_symlink():
        states = sorted(p.name for p in (run_dir / STATES).glob("[0-9]*"))
        if states:
            raise RunStateError(
                f"{run_dir} is damaged: its {CURRENT} link is missing; relink the last "
                f"state (ln -s {STATES}/{states[-1]} {link}) or {fresh}"
            )
        raise RunStateError(
            f"{run_dir} holds a run written by an older version of this package (no "
            f"{CURRENT} link); {fresh}"
        )
    target = run_dir / os.readlink(link)
    if not (target / "agent.pt").is_file():
        raise RunStateError(
            f"{run_dir} is damaged: {CURRENT} points to {target}, which holds no "
            f"agent.pt; restore it or {fresh}"
        )
    try:
        return load_checkpoint(target / "agent.pt", kind=kind)
    except ValueError as exc:  # CheckpointError: unsafe, damaged or wrong
        raise RunStateError(f"{exc}; {fresh}") from None


def save_state(
    run_dir: Path,
    checkpoint: Mapping[str, Any],
    history: Mapping[str, Any],
    new_models: Mapping[str, Callable[[Path], Any]],
    carry: set[str] = frozenset(),
) -> Path:
    """Write a new state and make it current in one step: `checkpoint` (the keyword
    arguments of `save_checkpoint`) as ``agent.pt``, `history` as ``history.json``, and
    an archive of the current state's files named in `carry` plus `new_models` (file
    name -> a function that saves the model to a given path). Returns the new state
    directory. Chapter 5."""
    run_dir = Path(run_dir).absolute()
    states = run_dir / STATES
    states.mkdir(parents=True, exist_ok=True)
    tmp = states / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "archive").mkdir(parents=True)
        previous = _current(run_dir)
        if previous is not None:
            for name in sorted(set(carry) - set(new_models)):
                _carry(previous / "archive" / name, tmp / "archive" / name)
        for name, save in new_models.items():
            save(tmp / "archive" / name)
        _step("archive")
        save_checkpoint(tmp / "agent.pt", **checkpoint)
        _step("agent.pt")
        save_json(tmp / "history.json", history)
        _step("history.json")
        number = 1 + max((int(p.name) for p in states.glob("[0-9]*")), default=0)
        final = states / f"{number:06d}"
        os.rename(tmp, final)
        _step("renamed")
        link = run_dir / f".{CURRENT}-{os.getpid()}"
        if link.is_symlink():
            link.unlink()
        os.symlink(os.path.join(STATES, final.name), link)
        os.replace(link, run_dir / CURRENT)  # the one atomic step
        _fsync(run_dir)
        _step("swapped")
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(exc, run_dir) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _views(run_dir)
    _prune(states, keep=final)
    return final


def _current(run_dir: Path) -> Path | None:
    link = run_dir / CURRENT
    if not link.is_symlink():
        return None
    target = run_dir / os.readlink(link)
    return target if target.is_dir() else None


def _carry(old: Path, new: Path) -> None:
    """An unchanged archive file in the new state: a hard link (no copy), or a copy
    where the file system has no hard links."""
    try:
        os.link(old, new)
    except OSError:
        shutil.copy2(old, new)
    card = old.with_suffix(".json")
    if card.exists():
        _carry(card, new.with_suffix(".json"))


def _views(run_dir: Path) -> None:
    """The fixed links ``agent.pt``, ``history.json`` and ``archive`` through
    ``current`` (made once; a file an older version left there is replaced)."""
    for name in VIEWS:
        view = run_dir / name
        if view.is_symlink() and os.readlink(view) == os.path.join(CURRENT, name):
            continue
        tmp = run_dir / f".{name}-{os.getpid()}.link"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(os.path.join(CURRENT, name), tmp)
        if view.is_dir() and not view.is_symlink():
            shutil.rmtree(view)  # an older version's archive directory
        os.replace(tmp, view)


def _prune(states: Path, keep: Path) -> None:
    """Remove every state but `keep` (and temporary states of processes that died)."""
    for path in states.iterdir():
        if path == keep:
            continue
        if path.name.startswith(".tmp-"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
                continue
        shutil.rmtree(path, ignore_errors=True)

    return True


def _fsync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(exc: BaseException, run_dir: Path) -> RunStateError:
    """One line for a failed save: "no space left on device" when the disk is full
    (torch says only "unexpected pos" then), else the system's own words."""
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, RuntimeError) and not full:
        try:
            full = shutil.disk_usage(run_dir).free < 1 << 20
        except OSError:
            full = False
        if not full and "unexpected pos" not in str(exc):
            raise exc
    what = "no space left on device" if full else (exc.strerror or str(exc))
    fix = "free some space" if full else "fix that"
    return RunStateError(
        f"could not save the run in {run_dir}: {what}; it keeps its last complete "
        f"cycle: {fix} and rerun the same command to resume"
    )


class RunLock:
    """Only one process per run directory: an ``flock`` on ``RUN/.lock`` held while the
    run lives (the kernel drops it when the process dies). Agents in one process share
    it, so a notebook may reopen its own run. Chapter 5."""

    _held: dict[Path, list] = {}  # path -> [fd, holders] in this process

    def __init__(self, run_dir: Path):
        self.path, self.holding = Path(run_dir).absolute() / ".lock", False

    def acquire(self) -> "RunLock":
        if self.path in self._held:
            self._held[self.path][1] += 1
            self.holding = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunStateError(
                f"{self.path.parent} is in use by another rsi process "
                f"({holder or 'unknown'}); wait for it to finish, stop it, or use "
                "another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._held[self.path], self.holding = [fd, 1], True
        return self

    def release(self) -> None:
        if not self.holding:
            return
        self.holding = False
        held = self._held[self.path]
        held[1] -= 1
        if held[1] == 0:
            del self._held[self.path]
            os.close(held[0])  # closing drops the flock

"""Where the coordinator and its workers meet: Optuna storage URLs, their passwords and
their failures.

Each storage is for one situation (chapter 5, "Scaling out"):

- a **journal file** (``journal:PATH``, or a path ending in ``.log``): one machine, any
  number of processes. Its lock is ``flock`` on an absolute path, so it is released
  when its holder dies and never dangles (Optuna's symlink lock, given a relative path,
  pointed at nothing and spun for ever).
- **PostgreSQL** (``postgresql://USER@HOST:PORT/DB``; ``postgresql+psycopg://`` is the
  same): several machines. The driver is psycopg 3, in the ``rsi`` extra. The password
  never goes in the URL of a command line: PostgreSQL's client reads ``PGPASSWORD`` or
  ``~/.pgpass`` itself, and ``SSM_METARL_STORAGE_PASSWORD`` works for any database.
- **SQLite** (``sqlite:///PATH``): one process only. Its file locking let two workers
  claim the same trial, so it is refused wherever a second process would share it.

Every URL that is shown or written anywhere goes through `mask` first.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = [
    "StorageError",
    "StorageURL",
    "parse_storage",
    "mask",
    "make_storage",
    "check_journal",
    "transient_errors",
    "retrying",
    "PASSWORD_ENV",
]

log = logging.getLogger(__name__)

#: Environment variable holding the database password (any database; PostgreSQL also
#: reads PGPASSWORD and ~/.pgpass on its own).
PASSWORD_ENV = "SSM_METARL_STORAGE_PASSWORD"
#: The URL forms that work, for error messages and ``--help``.
FORMS = (
    "journal:PATH (one machine), postgresql://USER@HOST:PORT/DB or "
    "postgresql+psycopg://... (several machines; password in PGPASSWORD, ~/.pgpass or "
    + PASSWORD_ENV
    + "), sqlite:///PATH (one process only)"
)
_PASSWORD = re.compile(r"(\b[a-z][\w+.-]*://[^:/@\s]*:)([^@\s]+)(@)", re.IGNORECASE)


class StorageError(RuntimeError):
    """A storage that cannot be used: the message is one line naming the file or URL
    (password masked) and the fix. Chapter 5."""


@dataclass(frozen=True)
class StorageURL:
    """A parsed storage URL: its kind, the URL Optuna opens, the masked URL to show,
    and the journal or SQLite file. Chapter 5."""

    kind: str  # "journal", "sqlite", "postgresql" or "mysql"
    url: str  # what Optuna opens (may hold a password: never shown)
    masked: str  # what is shown and written (password replaced by ***)
    path: Path | None = None  # the journal or SQLite file, absolute
    password_in_url: bool = False  # the user wrote a password into the URL

    def describe(self) -> str:
        """One phrase for cards and logs, e.g. "PostgreSQL postgresql+psycopg://..."."""
        name = {"journal": "journal file", "sqlite": "SQLite", "mysql": "MySQL"}
        return f"{name.get(self.kind, 'PostgreSQL')} {self.masked}"


def mask(text: str) -> str:
    """`text` with the password of every URL in it replaced by ``***`` (chapter 5)."""
    return _PASSWORD.sub(r"\1***\3", str(text))


def parse_storage(url: str) -> StorageURL:
    """Check a storage URL and say what it is; a ValueError names the forms that work.
    A plain ``postgresql://`` URL is opened with psycopg 3. Chapter 5."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"--storage must be a URL: {FORMS}")
    if url.startswith("journal:") or (url.endswith(".log") and "://" not in url):
        path = url.removeprefix("journal:")
        if not path:
            raise ValueError(
                "--storage journal: needs a file, e.g. journal:run/study.log"
            )
        path = Path(path).expanduser().absolute()
        return StorageURL("journal", f"journal:{path}", f"journal:{path}", path)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(f"--storage {mask(url)!r} is not a URL: {FORMS}") from None
    if parsed.drivername.split("+")[0] == "postgres":  # Heroku's and libpq's short form
        parsed = parsed.set(
            drivername=parsed.drivername.replace("postgres", "postgresql")
        )
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        name = parsed.database or ""
        if name in ("", ":memory:") or name.startswith("file:"):
            raise ValueError(
                "--storage sqlite needs a file (sqlite:///PATH): a memory database "
                "dies with its process and no worker could reach it"
            )
        path = Path(name).expanduser().absolute()
        return StorageURL("sqlite", f"sqlite:///{path}", f"sqlite:///{path}", path)
    if backend not in ("postgresql", "mysql"):
        raise ValueError(f"--storage {mask(url)!r}: unknown kind {backend!r}; {FORMS}")
    in_url = parsed.password is not None
    parsed = _driver(parsed)
    if not in_url and os.environ.get(PASSWORD_ENV):
        parsed = parsed.set(password=os.environ[PASSWORD_ENV])
    shown = parsed.render_as_string(hide_password=True)
    full = parsed.render_as_string(hide_password=False)
    return StorageURL(backend, full, shown, None, in_url)


def _driver(parsed):
    """The database driver, checked to be installed: psycopg 3 for a plain
    postgresql:// (SQLAlchemy 2.1's default is psycopg2, which this package does not
    install); a missing driver is named with its install command."""
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and "+" not in parsed.drivername:
        driver = "psycopg"  # the plain form: the driver that the rsi extra installs
    modules = {"psycopg": "psycopg", "mysqldb": "MySQLdb", "mysqlconnector": "mysql"}
    module = modules.get(driver, driver)
    if importlib.util.find_spec(module) is None:
        package = {"psycopg": "psycopg[binary]", "MySQLdb": "mysqlclient"}.get(module)
        hint = "ssm-metarl[rsi]' (or pip install '" if module == "psycopg" else ""
        raise ValueError(
            f"{backend} storage needs the {driver} driver, which is not installed: "
            f"pip install '{hint}{package or module}'"
        )
    return parsed.set(drivername=f"{backend}+{driver}")


def check_journal(path: Path, must_exist: bool = False) -> None:
    """Raise StorageError if `path` is not a whole Optuna journal: a record cut short
    (a kill or a full disk in the middle of a write) or a file that is no journal.
    Chapter 5."""
    if not path.exists():
        if must_exist:
            raise StorageError(
                f"no journal at {path}: start the coordinator first (rsi --out DIR "
                "makes DIR/study.log) or check the path"
            )
        return
    if not path.is_file():
        raise StorageError(f"journal {path} is not a file; name the run's study.log")
    lock = FlockLock(path)
    lock.acquire()  # a reader never sees a line half-written by a live writer
    try:
        data = path.read_bytes()
    finally:
        lock.release()
    lines = data.split(b"\n")
    cut = bool(data) and not data.endswith(b"\n")  # a writer died mid-line
    last = len(lines) - (0 if cut else 1)
    for number, line in enumerate(lines[:last], start=1):
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and isinstance(record.get("op_code"), int)
        except ValueError:
            ok = False
        if ok and not (cut and number == last):
            continue
        if number == 1 and not (cut and last == 1):
            raise StorageError(
                f"{path} is not an Optuna journal (its first line is no journal "
                "record); point --storage at a run's study.log, or use another --out"
            )
        raise StorageError(
            f"journal {path} is damaged: line {number} of {last} is "
            + (
                "cut short (a write stopped by a kill or a full disk)"
                if cut and number == last
                else "not a journal record"
            )
            + f"; remove that line (sed -i '{number}d' {path}) and rerun, or start "
            "afresh with --no-resume"
        )


class FlockLock:
    """The journal's lock: ``flock`` on ``PATH.flock`` (absolute). The kernel releases
    it when its holder dies, so a killed process never leaves a lock behind."""

    def __init__(self, journal: Path):
        self.path, self._fd = f"{Path(journal).absolute()}.flock", None
        self._thread = threading.Lock()  # one holder per process at a time

    def acquire(self) -> bool:
        self._thread.acquire()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._thread.release()


#: Database answers that retrying cannot fix: said at once, not after the timeout.
_PERMANENT = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "permission denied",
    "could not translate host name",
    "failed to resolve host",
    "name or service not known",
)


def transient_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the database is unreachable for now" (a restart, a
    dropped connection): retried, never fatal at once. Chapter 5."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    return (optuna.exceptions.StorageInternalError, SQLAlchemyError, ConnectionError)


def retrying(call: Callable, what: str, timeout: float = 120.0, first_wait=0.5):
    """`call()`, retried while the storage is unreachable, up to `timeout` seconds;
    then a StorageError saying what could not be done. Chapter 5."""
    errors, deadline, wait = transient_errors(), time.time() + timeout, first_wait
    while True:
        try:
            return call()
        except errors as exc:
            text = str(exc.__cause__ or exc)  # Optuna wraps the driver's own words
            cause = mask(next((ln for ln in text.splitlines() if ln.strip()), ""))
            if any(p in text.lower() for p in _PERMANENT):
                raise StorageError(f"{what}: {cause.strip()[:160]}") from None
            if time.time() + wait > deadline:
                raise StorageError(
                    f"the storage stayed unreachable for {timeout:.0f} s while "
                    f"{what} ({type(exc).__name__}: {cause[:120]})"
                ) from None
            log.warning("storage unreachable while %s; retrying in %.1f s", what, wait)
            time.sleep(wait * (0.5 + random.random()))
            wait = min(2 * wait, 5.0)


def make_storage(where: StorageURL, timeout: float = 60.0):
    """Open an Optuna storage: a flock-locked journal, or an RDB storage that checks
    its connections before use (so a restarted database is reconnected) and retries
    while several processes create the schema at once. Chapter 5."""
    import optuna

    if where.kind == "journal":
        where.path.parent.mkdir(parents=True, exist_ok=True)
        check_journal(where.path)
        backend = optuna.storages.journal.JournalFileBackend(
            str(where.path), lock_obj=FlockLock(where.path)
        )
        try:  # the first replay of every record: a foreign one fails here
            return optuna.storages.JournalStorage(backend)
        except (AssertionError, KeyError, ValueError, TypeError, IndexError) as exc:
            raise StorageError(
                f"journal {where.path} holds records Optuna cannot replay "
                f"({type(exc).__name__}: {str(exc)[:80]}); point --storage at a run's "
                "study.log, or start afresh with --no-resume"
            ) from None
    kwargs = {"pool_pre_ping": True} if where.kind != "sqlite" else {}
    return retrying(
        lambda: optuna.storages.RDBStorage(where.url, engine_kwargs=kwargs),
        f"opening {where.masked}",
        timeout,
    )

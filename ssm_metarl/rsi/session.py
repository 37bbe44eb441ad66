"""Who is alive: heartbeats, and the coordinator's claim on its study.

A `Beat` calls a function every few seconds in a background thread, so a process beats
while it trains, while it scores and while it waits, not only between steps. The
coordinator's `Session` writes ``coordinator`` on the study's notice board (its run,
its process, its last beat); a second coordinator finds it alive and is refused, and
workers stop when it has not beaten for their ``--coordinator-timeout``. Chapter 5.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

from .storage import StorageError
from .study import SharedStudy, process_id

__all__ = ["Beat", "Session", "beat_interval", "coordinator_alive", "rival"]

log = logging.getLogger(__name__)


def beat_interval(stale_seconds: float) -> float:
    """How often to beat so that `stale_seconds` of silence surely means death.
    Chapter 5."""
    return min(10.0, max(0.2, stale_seconds / 6))


def coordinator_alive(record, timeout: float, now: float | None = None) -> bool:
    """Whether a ``coordinator`` record is a running coordinator that beat within
    `timeout` seconds. Chapter 5."""
    now = time.time() if now is None else now
    return (
        isinstance(record, dict)
        and not record.get("finished")
        and now - float(record.get("beat", 0)) < timeout
    )


def rival(record, run_id: str | None, stale: float) -> bool:
    """Whether a ``coordinator`` record is another live coordinator: alive, not this
    process, not this run (a run resumed after its coordinator was killed takes its
    study back; the run directory's lock says no other process runs it here), and not
    a process of this host that has died. Chapter 5."""
    if not coordinator_alive(record, stale) or record.get("run") == run_id:
        return False
    host, _, pid = str(record.get("process", "")).rpartition(":")
    if record.get("process") == process_id():
        return False
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
    return True


class Beat:
    """Call `beat()` every `interval` seconds in a daemon thread, from `start()` to
    `stop()`; a failing call is logged and tried again next time (a database that
    restarts comes back). Chapter 5."""

    def __init__(self, beat: Callable[[], None], interval: float):
        self.beat, self.interval = beat, interval
        self._stop, self._wake, self._thread = (
            threading.Event(),
            threading.Event(),
            None,
        )

    def start(self) -> "Beat":
        self._thread = threading.Thread(target=self._run, daemon=True, name="beat")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # never kill the process from its heartbeat
                log.debug("heartbeat failed: %s", type(exc).__name__)
            self._wake.wait(self.interval)
            self._wake.clear()

    def poke(self, interval: float | None = None) -> None:
        """Beat now (and from now on every `interval` seconds, if given)."""
        self.interval = interval or self.interval
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval + 5)

    def __enter__(self) -> "Beat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Session:
    """One coordinator's hold on a study from `open()` to `close()` (chapter 5).

    `open()` refuses a study that a `rival` holds (another live coordinator: its beat
    younger than `stale` seconds), and checks after a moment that no coordinator
    that started at the same time took the study instead. While open, the session
    beats; if another coordinator overwrites the record, `usurped` says so and the loop
    stops.
    """

    def __init__(self, shared: SharedStudy, run_id: str, stale: float):
        self.shared, self.run_id, self.stale = shared, run_id, stale
        self.id, self.usurped = uuid.uuid4().hex[:12], None
        self._beat = Beat(self._tick, beat_interval(stale))

    def _record(self, finished: bool = False) -> dict:
        return {
            "run": self.run_id,
            "session": self.id,
            "process": process_id(),
            "beat": time.time(),
            "finished": finished,
        }

    def open(self, settle: float = 1.0) -> "Session":
        other = self.shared.attrs().get("coordinator")
        if rival(other, self.run_id, self.stale):
            raise StorageError(self._busy(other))
        self.shared.post("coordinator", self._record())
        time.sleep(settle)  # two coordinators that start together: the last write wins
        now = self.shared.attrs().get("coordinator") or {}
        if now.get("session") != self.id:
            raise StorageError(self._busy(now))
        self._beat.start()
        return self

    def _busy(self, other: dict) -> str:
        age = time.time() - float(other.get("beat", 0))
        return (
            f"study {self.shared.name!r} in {self.shared.where.masked} is in use by "
            f"another coordinator ({other.get('process')}, run {other.get('run')}, "
            f"last beat {age:.0f} s ago); stop it, or use another --study"
        )

    def _tick(self) -> None:
        now = self.shared.attrs().get("coordinator") or {}
        if now.get("session") not in (None, self.id):
            self.usurped = self._busy(now)
            self._beat._stop.set()
            self._beat._wake.set()
            return
        self.shared.post("coordinator", self._record())

    def check(self) -> None:
        """Raise StorageError if another coordinator took the study over."""
        if self.usurped:
            raise StorageError(f"stopped: {self.usurped}")

    def close(self, finished: bool = True) -> None:
        """Stop beating and tell the workers the run is over (they exit)."""
        self._beat.stop()
        if self.usurped is None:
            try:
                self.shared.post("coordinator", self._record(finished=finished))
            except (StorageError, OSError) as exc:
                log.warning("could not tell the workers the run ended: %s", exc)

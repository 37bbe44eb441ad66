"""Shared helpers for the multi-process RSI tests: a throwaway PostgreSQL server, and
coordinator / worker processes with bounded waits.

`PostgresServer` runs Debian's PostgreSQL binaries (``apt-get install -y postgresql``
puts them in /usr/lib/postgresql/*/bin) on 127.0.0.1 and a free port, from a data
directory owned by the ``postgres`` user when the tests run as root (PostgreSQL refuses
to run as root). It has a password (scram-sha-256), which the processes read from
PGPASSWORD, never from a URL. Without the binaries the PostgreSQL tests skip with the
reason, except when CI is "true": then they fail, so CI can never silently skip them.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
#: Tiny settings: a cycle of 3 candidates takes seconds.
TINY = ["--candidates", "3", "--train_epochs", "1", "--tasks_per_epoch", "2", "--episodes", "2",
        "--eval_episodes", "2", "--validation_tasks", "8", "--test_tasks", "4", "--threads", "1"]
#: Candidates that train for about `seconds` each (long enough to be killed mid-trial).
def SLOW(seconds):
    return ["--train_epochs", "1000", "--max_env_steps", "1000000000", "--max_train_seconds", str(seconds)]


def require(reason: str):
    """Skip with `reason`, or fail when CI is "true" (CI must run every test)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test may not be skipped)")
    pytest.skip(reason)


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries (the newest version), or pg_ctl on the PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    found.sort(key=lambda p: int(re.search(r"/(\d+)/bin", p).group(1)))
    if found:
        return Path(found[-1]).parent
    return Path(shutil.which("pg_ctl")).parent if shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL server in a temporary directory; `restart()` for the tests that
    restart it mid-run."""

    def __init__(self, bin_dir: Path):
        self.bin, self.port = bin_dir, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="rsi-pg-"))
        self.password = "pw-" + uuid.uuid4().hex[:16]
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        (self.root / "pw").write_text(self.password + "\n")
        if self.as_owner:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.root / "pw", "postgres")
        self._run("initdb", "-D", self.root / "data", "-U", "rsi", "--auth=scram-sha-256",
                  f"--pwfile={self.root / 'pw'}", "--no-sync", "-E", "UTF8")
        self.env = {**ENV, "PGPASSWORD": self.password}

    def _run(self, tool, *args, timeout=60):
        cmd = [*self.as_owner, str(self.bin / tool), *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**ENV, "PGPASSWORD": self.password})
        assert done.returncode == 0, f"{tool} failed: {done.stderr[-500:]}"

    def start(self):
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F"
        self._run("pg_ctl", "-D", self.root / "data", "-l", self.root / "log", "-o", options,
                  "-w", "-t", "30", "start")

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.root / "data", "-m", mode, "-w", "-t", "30", "stop")

    def restart(self, down: float = 2.0):
        self.stop()
        time.sleep(down)
        self.start()

    def database(self) -> str:
        """A new empty database; its URL, without the password."""
        name = "t" + uuid.uuid4().hex[:10]
        self._run("createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "rsi", name)
        return f"postgresql://rsi@127.0.0.1:{self.port}/{name}"

    def close(self):
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """A running PostgreSQL server for the module's tests (stopped afterwards)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        require("PostgreSQL binaries not found: apt-get install -y postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require("psycopg (the rsi extra's PostgreSQL driver) is not installed")
    server = PostgresServer(bin_dir)
    before = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = server.password  # the test process reads the study too
    try:
        server.start()
        yield server
    finally:
        server.close()
        if before is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = before


# -- processes -------------------------------------------------------------------------
class Procs:
    """Processes started by a test, each logging to its own file; all killed at the
    end, whatever happened."""

    def __init__(self, root: Path, env=None):
        self.root, self.env, self.all = root, env or ENV, []

    def start(self, name: str, *args) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "ssm_metarl", "-v", *map(str, args)],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                start_new_session=True)
        proc.name, proc.log = name, self.root / f"{name}.log"
        self.all.append(proc)
        return proc

    def coordinator(self, name, out, *flags):
        return self.start(name, "rsi", "--out", out, *TINY, "--quiet", *flags)

    def worker(self, name, storage, study, *flags):
        return self.start(name, "rsi-worker", "--storage", storage, "--study", study,
                          "--threads", "1", *flags)

    def text(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_all(self):
        for proc in self.all:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.all:  # grandchildren (a coordinator's local workers)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def procs(tmp_path):
    box = Procs(tmp_path)
    try:
        yield box
    finally:
        box.kill_all()


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """Poll `predicate` until it returns something true; fail after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def finish(proc, timeout: float) -> int:
    """The exit code of `proc` within `timeout` s (or fail, naming its log)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.name} still running after {timeout:.0f} s: "
                             f"{proc.log.read_text(errors='replace')[-800:]}") from None


def study(storage: str, name: str):
    """A reader's view of a study (trials, notes) from the test process."""
    from ssm_metarl.rsi.study import SharedStudy

    return SharedStudy(storage, name, create=False, wait=30)


def claims(logs: list[str]) -> dict[int, list[str]]:
    """trial number -> the processes that claimed it, from the -v logs."""
    found = {}
    for text in logs:
        for who, number in re.findall(r"(?:worker|coordinator) (\S+): claimed trial (\d+)", text):
            found.setdefault(int(number), []).append(who)
    return found


def running_trial(shared, by: str | None = None):
    """A running trial (claimed by process `by`, if given) with a heartbeat, or None."""
    for t in shared.trials(states=(shared.TrialState.RUNNING,)):
        if "heartbeat" in t.user_attrs and (by is None or t.user_attrs.get("worker", "").endswith(f":{by}")):
            return t
    return None


def history(out: Path) -> dict:
    return json.loads((out / "history.json").read_text())


def secrets_in(paths, secret: str) -> list[str]:
    """Files under `paths` whose bytes contain `secret`."""
    hits = []
    for root in paths:
        root = Path(root)
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and secret.encode() in path.read_bytes():
                hits.append(str(path))
    return hits


def command_lines(pids) -> list[str]:
    """The command lines (as `ps` shows them) of live processes."""
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return lines


# -- the rule that CI never skips ------------------------------------------------------
def test_ci_never_skips_the_postgres_tests(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="may not be skipped"):
        require("binaries missing")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require("binaries missing")

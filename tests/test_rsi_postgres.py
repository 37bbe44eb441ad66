"""Chapter 5's loop on a real PostgreSQL server: a coordinator and three workers on one
study, with kills and a database restart. Every wait is bounded and every process is
killed at the end. Tiny settings: the whole file runs in about two minutes on 2 cores.

What each test shows (and what chapter 5's "Scaling out" section quotes, through
models/rsi_scaling.json, written by `python tests/test_rsi_postgres.py`):
- every trial is claimed and run exactly once, and no password reaches any file,
  card or command line;
- a worker killed with SIGKILL mid-trial: its trial is failed as lost and replaced, and
  the cycle finishes;
- the coordinator killed with SIGKILL mid-cycle and started again: the workers survive
  (they wait up to --coordinator-timeout) and rejoin the resumed run;
- the database restarted mid-run: coordinator and workers wait and reconnect, and the
  run finishes.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from test_rsi_support import (  # noqa: E402
    SLOW,
    Procs,
    claims,
    command_lines,
    finish,
    history,
    postgres_bin,
    postgres,  # noqa: F401 (the fixture)
    procs,  # noqa: F401 (the fixture)
    require,
    running_trial,
    secrets_in,
    study,
    wait_for,
)

WORKERS = 3


def start_run(procs, postgres, url, name, *flags, workers=WORKERS, timeout="60"):
    """Three hand-started workers and a coordinator on one study of `url`."""
    procs.env = postgres.env  # the password travels in PGPASSWORD only
    started = [procs.worker(f"w{i}", url, name, "--coordinator-timeout", timeout)
               for i in range(workers)]
    coordinator = procs.coordinator("coordinator", procs.root / "run", "--storage", url,
                                    "--study", name, *flags)
    return coordinator, started


def logs(procs, names):
    return [procs.text(n) for n in names]


def test_every_trial_runs_exactly_once_and_no_password_leaks(postgres, procs):
    url = postgres.database()
    coordinator, workers = start_run(procs, postgres, url, "once", "--cycles", "2",
                                     "--ship", procs.root / "shipped")
    seen = wait_for(lambda: [l for l in command_lines([coordinator.pid] + [w.pid for w in workers]) if l],
                    10, "the processes' command lines")
    assert finish(coordinator, 120) == 0, procs.text("coordinator")
    for w in workers:
        assert finish(w, 30) == 0, procs.text(w.name)  # none crashed creating the schema
    names = ["coordinator"] + [w.name for w in workers]
    claimed = claims(logs(procs, names))
    shared = study(url, "once")
    ran = [t for t in shared.trials() if t.state.name == "COMPLETE"]
    assert len(ran) == 6 and all(len(claimed[t.number]) == 1 for t in ran), claimed
    assert all(len(who) == 1 for who in claimed.values())  # no trial claimed twice
    assert sum("rsi-worker: the run finished" in procs.text(w.name) for w in workers) == WORKERS
    card = json.loads((procs.root / "shipped.json").read_text())
    assert card["storage"].startswith("PostgreSQL postgresql+psycopg://rsi@127.0.0.1")
    assert secrets_in([procs.root / "run", procs.root / "shipped.json", procs.root / "shipped.pth"],
                      postgres.password) == []
    assert not any(postgres.password in line for line in seen)
    RESULTS["once"] = {"trials": len(ran), "claimed_twice": 0, "processes": 1 + WORKERS}


def test_a_worker_killed_mid_trial_is_replaced_and_the_cycle_finishes(postgres, procs):
    url = postgres.database()
    coordinator, workers = start_run(procs, postgres, url, "kill", "--cycles", "1",
                                     "--stale_seconds", "4", *SLOW(4))
    shared = study(url, "kill")
    by_pid = {str(w.pid): w for w in workers}
    trial = wait_for(lambda: next(filter(None, (running_trial(shared, by=p) for p in by_pid)), None),
                     60, "a worker running a trial")
    victim = by_pid[trial.user_attrs["worker"].split(":")[-1]]
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.time()
    assert finish(coordinator, 60) == 0, procs.text("coordinator")
    recovered = time.time() - killed_at
    lost = next(t for t in shared.trials() if t.number == trial.number)
    assert lost.state.name == "FAIL" and "worker lost" in lost.user_attrs["reason"]
    replacement = [t for t in shared.trials() if t.user_attrs.get("replaces") == trial.number]
    assert len(replacement) == 1 and replacement[0].state.name == "COMPLETE"
    (report,) = history(procs.root / "run")["history"]
    statuses = {c["trial"]: c["status"] for c in report["candidates"]}
    assert statuses[trial.number] == "failed" and not report["emergency"]
    assert recovered < 60
    RESULTS["worker_kill"] = {"stale_seconds": 4, "cycle_finished_after_kill_s": round(recovered, 1)}


def test_the_coordinator_killed_and_resumed_finds_its_workers(postgres, procs):
    url = postgres.database()
    flags = ("--cycles", "2", *SLOW(3))
    coordinator, workers = start_run(procs, postgres, url, "resume", *flags)
    shared = study(url, "resume")
    wait_for(lambda: running_trial(shared), 60, "a running trial")
    os.kill(coordinator.pid, signal.SIGKILL)
    coordinator.wait(timeout=10)
    killed_at = time.time()
    time.sleep(2)
    assert all(w.poll() is None for w in workers)  # the workers survive
    again = procs.coordinator("again", procs.root / "run", "--storage", url, "--study", "resume",
                              *flags)
    assert finish(again, 120) == 0, procs.text("again")
    resumed = time.time() - killed_at
    for w in workers:
        assert finish(w, 30) == 0 and "the run finished" in procs.text(w.name)
    h = history(procs.root / "run")["history"]
    assert [r["cycle"] for r in h] == [0, 1]
    pids = {str(w.pid) for w in workers}
    assert any(str(c["worker"]).split(":")[-1] in pids for r in h for c in r["candidates"])
    claimed = claims(logs(procs, ["coordinator", "again"] + [w.name for w in workers]))
    assert all(len(who) == 1 for who in claimed.values()), claimed
    RESULTS["coordinator_kill"] = {"run_finished_after_kill_s": round(resumed, 1),
                                   "workers_survived": len(workers)}


def test_a_database_restart_mid_run_is_waited_for(postgres, procs):
    url = postgres.database()
    coordinator, workers = start_run(procs, postgres, url, "restart", "--cycles", "2", *SLOW(3))
    shared = study(url, "restart")
    wait_for(lambda: running_trial(shared), 60, "a running trial")
    started = time.time()
    postgres.restart(down=3.0)
    assert finish(coordinator, 120) == 0, procs.text("coordinator")
    for w in workers:
        assert finish(w, 30) == 0, procs.text(w.name)
    h = history(procs.root / "run")["history"]
    assert [r["cycle"] for r in h] == [0, 1]
    text = "".join(logs(procs, ["coordinator"] + [w.name for w in workers]))
    assert "unreachable" in text  # somebody noticed, waited and reconnected
    RESULTS["db_restart"] = {"down_s": 3.0, "run_finished_after_restart_s": round(time.time() - started, 1)}


RESULTS = {}


@pytest.fixture(scope="module", autouse=True)
def record(request):
    """With SSM_METARL_RECORD=PATH, the measured times are written to PATH as JSON."""
    start = time.time()
    yield
    target = os.environ.get("SSM_METARL_RECORD")
    if target and RESULTS:
        said = subprocess.run([str(postgres_bin() / "postgres"), "--version"], capture_output=True, text=True)
        version = re.search(r"\d+(\.\d+)*", said.stdout).group(0)
        RESULTS.update(wall_seconds=round(time.time() - start, 1), workers=WORKERS,
                       command="python tests/test_rsi_postgres.py",
                       storage=f"PostgreSQL {version} on 127.0.0.1, password from PGPASSWORD",
                       settings="3 candidates per cycle, tiny training (a few seconds each)")
        Path(target).write_text(json.dumps(RESULTS, indent=1) + "\n")


if __name__ == "__main__":  # writes models/rsi_scaling.json for chapter 5
    os.environ["SSM_METARL_RECORD"] = str(Path(__file__).resolve().parents[1] / "models" / "rsi_scaling.json")
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))

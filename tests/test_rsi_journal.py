"""The issue's four worst problems, each reproduced on the journal file (one machine)
and bounded in time; every process is killed at the end, whatever happens.

1. A reused study hung for ever: a second `rsi` on the same --out (resumed, or with
   --no-resume) now runs with its workers; another run's study is refused.
2. Nobody watched the workers: the only worker SIGKILLed mid-trial (its trial is
   replaced and the coordinator runs the waiting ones), the coordinator SIGKILLed (its
   workers stop), Ctrl-C on a worker (its trial is given back at once).
3. Workers died under a failed trial, or for lack of a heartbeat while scoring; two
   coordinators shared one --out or one study. (The database restart and the schema
   created by many workers at once: tests/test_rsi_postgres.py.)
4. The journal lock spun for ever with a relative --out.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("optuna")

from test_rsi_support import SLOW, ENV, claims, finish, history, procs, study, wait_for  # noqa: E402,F401

from ssm_metarl import StateSpaceModel  # noqa: E402
from ssm_metarl.cli import main  # noqa: E402
from ssm_metarl.rsi.search import RSIConfig  # noqa: E402
from ssm_metarl.rsi.session import Session  # noqa: E402
from ssm_metarl.rsi.storage import FlockLock, make_storage, parse_storage  # noqa: E402
from ssm_metarl.rsi.study import SharedStudy  # noqa: E402
from ssm_metarl.rsi.verify import encode_model  # noqa: E402
from ssm_metarl.rsi.worker import run_worker  # noqa: E402

TINY = dict(candidates=2, train_epochs=0, validation_tasks=8, test_tasks=4, episodes=2, eval_episodes=2)


def worker_pids(shared, exclude=()):
    return {int(k.rsplit(":", 1)[1]) for k in shared.attrs() if k.startswith("worker:")} - set(exclude)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"


# -- 1. a reused study ---------------------------------------------------------------
def test_problem1_a_second_run_on_the_same_out_works_with_its_workers(procs):
    """Resumed and afresh (--no-resume), on a relative --out, with a local worker: no
    hang, and the second run's trials are the new workers' (not all the coordinator's)."""
    first = procs.coordinator("first", "run", "--workers", "1", "--cycles", "1")
    assert finish(first, 90) == 0, procs.text("first")
    second = procs.coordinator("second", "run", "--workers", "1", "--cycles", "2")
    assert finish(second, 90) == 0, procs.text("second")
    h = history(procs.root / "run")["history"]
    assert [r["cycle"] for r in h] == [0, 1]
    second_pid = str(second.pid)
    assert any(not str(c["worker"]).endswith(f":{second_pid}") for c in h[1]["candidates"])
    third = procs.coordinator("third", "run", "--workers", "1", "--cycles", "1", "--no-resume")
    assert finish(third, 90) == 0, procs.text("third")
    assert [r["cycle"] for r in history(procs.root / "run")["history"]] == [0]
    assert "rsi-worker: the run finished" in procs.text("third")


# -- 2. nobody watched the workers ---------------------------------------------------
def shared_study(procs):
    """The run's journal study, once the coordinator has created its file (on a loaded
    machine that can take longer than starting the process)."""
    journal = procs.root / "run" / "study.log"
    wait_for(journal.exists, 60, "the coordinator's journal")
    return study(f"journal:{journal}", "rsi")


def test_problem2_the_only_worker_killed_the_coordinator_finishes_the_cycle(procs):
    coordinator = procs.coordinator("c", "run", "--workers", "1", "--cycles", "1",
                                    "--stale_seconds", "3", *SLOW(3))
    shared = shared_study(procs)
    # a worker beats for its trial just before it writes its name on it: wait for both
    trial = wait_for(lambda: next((t for t in shared.trials(states=(shared.TrialState.RUNNING,))
                                   if {"heartbeat", "worker"} <= set(t.user_attrs)), None),
                     60, "a running trial that names its worker")
    pid = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
    assert pid != coordinator.pid
    os.kill(pid, signal.SIGKILL)
    start = time.time()
    assert finish(coordinator, 60) == 0, procs.text("c")
    assert time.time() - start < 60
    (report,) = history(procs.root / "run")["history"]
    lost = [c for c in report["candidates"] if "worker lost" in (c.get("reason") or "")]
    assert lost and lost[0]["status"] == "failed" and not report["emergency"]
    assert "runs the round's waiting trials itself" in procs.text("c")


def test_problem2_workers_stop_when_their_coordinator_is_killed(procs):
    coordinator = procs.coordinator("c", "run", "--workers", "2", "--cycles", "5",
                                    "--stale_seconds", "3", *SLOW(3))
    shared = shared_study(procs)
    pids = wait_for(lambda: len(worker_pids(shared)) == 2 and worker_pids(shared), 60, "two workers")
    os.kill(coordinator.pid, signal.SIGKILL)
    coordinator.wait(timeout=10)
    # local workers wait max(10, 2 x stale_seconds) = 10 s for a coordinator, then stop
    wait_for(lambda: not any(alive(p) for p in pids), 45, "the orphaned workers to stop")


def test_problem2_ctrl_c_on_a_worker_gives_its_trial_back_at_once(procs):
    coordinator = procs.coordinator("c", "run", "--workers", "2", "--cycles", "1",
                                    "--stale_seconds", "300", *SLOW(4))
    shared = shared_study(procs)
    trial = wait_for(lambda: next((t for t in shared.trials(states=(shared.TrialState.RUNNING,))
                                   if str(t.user_attrs.get("worker", "")).split(":")[-1]
                                   not in ("", str(coordinator.pid))), None), 60, "a worker's trial")
    os.kill(int(trial.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGINT)
    start = time.time()
    assert finish(coordinator, 60) == 0, procs.text("c")
    assert time.time() - start < 60  # far less than stale_seconds = 300
    given_back = next(t for t in shared.trials() if t.number == trial.number)
    assert given_back.state.name == "FAIL" and "stopped by a signal" in given_back.user_attrs["reason"]
    assert "its running trial was given back" in procs.text("c")


def test_problem2_sigterm_on_the_coordinator_ends_cleanly_and_its_workers_stop(procs):
    coordinator = procs.coordinator("c", "run", "--workers", "1", "--cycles", "3", *SLOW(3))
    shared = shared_study(procs)
    pids = wait_for(lambda: worker_pids(shared), 60, "the worker")
    wait_for(lambda: shared.trials(states=(shared.TrialState.RUNNING,)), 60, "a running trial")
    os.kill(coordinator.pid, signal.SIGTERM)
    assert finish(coordinator, 60) == 130
    assert "interrupted: the run in" in procs.text("c") and "Traceback" not in procs.text("c")
    wait_for(lambda: not any(alive(p) for p in pids), 40, "its worker to stop")


# -- 3. workers that survive ---------------------------------------------------------
def _round(shared, n, **config):
    if getattr(shared, "session", None) is None:
        shared.session = Session(shared, "test-run", stale=30).open(settle=0)
    cfg = RSIConfig(**{**TINY, **config})
    torch.manual_seed(0)
    shared.post_round({"id": "r0", "cycle": 0, "seed": 1, "inner_lr": 0.1,
                       "model": encode_model(StateSpaceModel(8, 4, 4, 16)),
                       "current_returns": [20.0] * cfg.validation_tasks, "config": cfg.to_dict()}, n)


def test_problem3_a_trial_failed_under_a_worker_does_not_kill_it(procs):
    storage = f"journal:{procs.root / 'study.log'}"
    shared = SharedStudy(storage, "s")
    _round(shared, 2, train_epochs=1000, tasks_per_epoch=2, max_env_steps=10**9, max_train_seconds=4)
    worker = procs.worker("w", storage, "s", "--max-trials", "2", "--coordinator-timeout", "60")
    first = wait_for(lambda: next(iter(shared.trials(states=(shared.TrialState.RUNNING,))), None),
                     60, "a running trial")
    shared.fail(first, "failed by the test while its worker trains")
    assert finish(worker, 60) == 0, procs.text("w")
    states = {t.number: t.state.name for t in shared.trials()}
    assert states[first.number] == "FAIL" and list(states.values()).count("COMPLETE") == 1
    assert "was closed while it ran" in procs.text("w")
    shared.session.close()


def test_problem3_heartbeats_continue_while_a_trial_is_scored(tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    shared = SharedStudy(storage, "s")
    _round(shared, 1, stale_seconds=1.0)

    def slow(current, params, config, seed, heartbeat):  # 3 s without calling heartbeat
        time.sleep(3)
        return current, {"epochs": 0}

    thread = threading.Thread(target=run_worker, args=(storage, "s", slow),
                              kwargs=dict(max_trials=1, coordinator_timeout=30, poll=0.1))
    thread.start()
    deadline = time.time() + 30
    while thread.is_alive() and time.time() < deadline:
        shared.fail_stale("r0", stale_seconds=1.0)  # the coordinator's watch, 10 times a second
        time.sleep(0.1)
    thread.join(timeout=5)
    (trial,) = shared.trials("r0")
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("reason")
    shared.session.close()


def test_problem3_two_coordinators_on_one_out_or_one_study_are_refused(procs, capsys):
    storage = f"journal:{procs.root / 'shared.log'}"
    first = procs.coordinator("first", procs.root / "a", "--storage", storage, "--cycles", "5", *SLOW(3))
    shared = wait_for(lambda: (procs.root / "shared.log").exists() and study(storage, "rsi"), 60, "the study")
    wait_for(lambda: shared.attrs().get("coordinator"), 60, "the first coordinator's session")
    base = ["rsi", "--candidates", "1", "--train_epochs", "0", "--validation_tasks", "8", "--quiet"]
    with pytest.raises(SystemExit) as same_out:
        main([*base, "--out", str(procs.root / "a"), "--storage", storage])
    assert same_out.value.code == 2 and "in use by another rsi process" in capsys.readouterr().err
    with pytest.raises(SystemExit) as same_study:
        main([*base, "--out", str(procs.root / "b"), "--storage", storage])
    err = capsys.readouterr().err
    assert same_study.value.code == 2 and ("live coordinator" in err or "holds another run" in err), err
    assert first.poll() is None  # the first one runs on, untouched


# -- 4. the journal lock ---------------------------------------------------------------
def test_problem4_a_relative_journal_path_never_spins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    os.symlink("run/study.log", "run/study.log.lock")  # Optuna's old lock, left dangling
    where = parse_storage("journal:run/study.log")
    assert where.path.is_absolute()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, sys; sys.path.insert(0, %r)\n"
        "from ssm_metarl.rsi.storage import FlockLock\n"
        "FlockLock(%r).acquire(); print('held', flush=True); time.sleep(600)"
    ) % (str(ENV["PYTHONPATH"]), str(where.path))], stdout=subprocess.PIPE, env=ENV)
    try:
        assert holder.stdout.readline().strip() == b"held"
        os.kill(holder.pid, signal.SIGKILL)  # it dies holding the lock
        holder.wait(timeout=10)
        cpu, wall = time.process_time(), time.time()
        storage = make_storage(where)
        for i in range(20):
            storage.create_new_study([__import__("optuna").study.StudyDirection.MAXIMIZE], f"s{i}")
        assert time.time() - wall < 5 and time.process_time() - cpu < 3
    finally:
        holder.kill()
        holder.wait(timeout=10)
    lock = FlockLock(where.path)
    assert lock.acquire() and lock.release() is None and lock.path.startswith("/")

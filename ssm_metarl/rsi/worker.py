"""The worker: claim a proposal, train it, score it, tell the study; survive what a
cluster does to it.

`run_trial` is one proposal from claim to report. `run_worker` is the
``python -m ssm_metarl rsi-worker`` loop around it. A worker beats (in a background
thread, so also while it trains and scores) and works only while a coordinator is
alive: it stops when the run is finished, or when no coordinator has beaten for
``coordinator_timeout`` seconds, so a killed coordinator leaves no orphans for long,
and a coordinator resumed within that time finds its workers still there. A trial
failed under a worker (superseded, or taken for lost) is dropped and the worker goes
on; a database that restarts is waited for; Ctrl-C or SIGTERM marks the running trial
lost, so the coordinator replaces it at once. Chapter 5.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..meta.maml_rl import _seed
from .search import (
    Candidate,
    RSIConfig,
    score,
    suggest,
    train_candidate,
    unsafe_reason,
    validation_tasks,
)
from .session import Beat, beat_interval, coordinator_alive
from .storage import StorageError
from .study import SharedStudy, process_id
from .verify import decode_model, encode_model

__all__ = ["run_trial", "run_worker", "WorkerReport"]

log = logging.getLogger(__name__)


class TrialClosed(Exception):
    """The trial was failed while this worker ran it (superseded, or taken for lost)."""


@dataclass
class WorkerReport:
    """How a worker's run ended: trials it ran and why it stopped (chapter 5)."""

    trials: int
    reason: str


def run_trial(
    shared: SharedStudy,
    trial,
    trainer: Callable = train_candidate,
    closed: Callable[[], bool] = lambda: False,
) -> str:
    """Train, check and score the proposal of one claimed trial, then tell the study.
    Returns "complete", "failed", "superseded" or "closed" (`closed()` turned true, or
    the study refused the report: the trial had been failed). Chapter 5."""
    info = shared.attrs().get("round")
    if not isinstance(info, dict) or trial.user_attrs.get("round") != info.get("id"):
        shared.fail(trial, "superseded: not the current round")
        return "superseded"
    try:  # a round this code cannot read fails its trial, never the worker
        config = RSIConfig(**info["config"])
        current = Candidate(decode_model(info["model"]), float(info["inner_lr"]))
        seed, baseline = _seed(info["seed"], trial.number), info["current_returns"]
        baseline = float(np.mean(baseline))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        shared.fail(
            trial, f"the round is unreadable ({type(exc).__name__}: {exc})"[:200]
        )
        return "failed"

    def heartbeat():  # called by the trainer between epochs
        if closed():
            raise TrialClosed

    finished = shared.optuna.exceptions.UpdateFinishedTrialError
    try:
        shared._retry(lambda: trial.set_user_attr("worker", process_id()), "claiming")
        params = shared._retry(lambda: suggest(trial), "asking the sampler")
        try:
            candidate, train_info = trainer(current, params, config, seed, heartbeat)
        except TrialClosed:
            raise
        # a crashing proposal is a rejected proposal, never a crashed worker
        except Exception as exc:
            why = f"training raised {type(exc).__name__}: {str(exc)[:120]}"
            return _report(shared, trial, {"reason": why})
        reason, returns = unsafe_reason(candidate), None
        if reason is None:
            try:
                tasks = validation_tasks(config.family, config.validation_tasks)
                returns = score(candidate, tasks, config, info["seed"])
            # e.g. NaN action probabilities after the adaptation step
            except (RuntimeError, ValueError) as exc:
                reason = (
                    f"non-finite adaptation ({type(exc).__name__}: {str(exc)[:80]})"
                )
            heartbeat()
            reason = reason or unsafe_reason(
                candidate, returns, baseline, config.instability
            )
        attrs = {"train": train_info}
        if reason is not None and reason.startswith("non-finite"):
            return _report(shared, trial, {**attrs, "unsafe": reason})
        attrs.update(
            returns=[float(r) for r in returns],
            inner_lr=candidate.inner_lr,
            model=encode_model(candidate.model),
            **({"unsafe": reason} if reason else {}),
        )
        gain = float(np.mean(returns) - baseline)
        return _report(shared, trial, attrs, gain)
    except (TrialClosed, finished):
        log.info(
            "trial %d was closed while it ran; its result is dropped", trial.number
        )
        return "closed"


def _report(shared: SharedStudy, trial, attrs: dict, value: float | None = None):
    """Write a trial's attributes and tell its value (or failure), retried while the
    storage is unreachable."""
    state = shared.TrialState

    def tell():
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        if value is None:
            shared.study.tell(trial, state=state.FAIL)
        else:
            shared.study.tell(trial, value)

    shared._retry(tell, f"reporting trial {trial.number}")
    return "failed" if value is None else "complete"


def run_worker(
    storage: str,
    study: str,
    trainer: Callable = train_candidate,
    poll: float = 1.0,
    idle_exit: float | None = None,
    max_trials: int | None = None,
    coordinator_timeout: float = 60.0,
    timeout: float = 120.0,
) -> WorkerReport:
    """The `rsi-worker` loop: while a coordinator is alive, claim the current round's
    waiting trials and run them. Stops when the run finishes, when no coordinator beat
    for `coordinator_timeout` s, after `max_trials`, or after `idle_exit` s without
    work; the storage may be unreachable for `timeout` s at a time. Chapter 5."""
    shared = SharedStudy(storage, study, create=False, wait=coordinator_timeout)
    shared.timeout, me = timeout, f"worker:{process_id()}"
    running = {"id": None, "number": None, "closed": False}

    def tick():  # the worker's own beat, and its running trial's heartbeat
        now = time.time()
        shared.storage.set_study_user_attr(
            shared.study_id, me, {"beat": now, "trial": running["number"]}
        )
        if running["id"] is not None:
            try:
                shared.storage.set_trial_user_attr(running["id"], "heartbeat", now)
            except shared.optuna.exceptions.UpdateFinishedTrialError:
                running["closed"] = True

    done, since, alive, seen = 0, time.time(), time.time(), set()
    with Beat(tick, beat_interval(RSIConfig.stale_seconds)) as beat:
        while max_trials is None or done < max_trials:
            try:
                notes = shared.attrs()
            except KeyError:  # the study was reset for a new run: find it again
                shared = SharedStudy(
                    storage, study, create=False, wait=coordinator_timeout
                )
                continue
            record, now = notes.get("coordinator"), time.time()
            if coordinator_alive(record, coordinator_timeout, now):
                alive = now
                seen.add(record.get("session"))
            elif isinstance(record, dict) and record.get("finished"):
                if record.get("session") in seen:
                    return WorkerReport(done, "the run finished")
            if now - alive > coordinator_timeout:
                return WorkerReport(
                    done, f"no live coordinator for {coordinator_timeout:.0f} s"
                )
            info = notes.get("round") or {}
            stale = (info.get("config") or {}).get("stale_seconds")
            interval = beat_interval(stale or RSIConfig.stale_seconds)
            trial = shared.claim(info.get("id")) if alive == now and info else None
            if trial is None:
                if idle_exit is not None and now - since > idle_exit:
                    return WorkerReport(done, f"no work for {idle_exit:.0f} s")
                time.sleep(poll)
                continue
            running.update(id=trial._trial_id, number=trial.number, closed=False)
            beat.poke(interval)  # the trial's first heartbeat, now
            log.info("worker %s: claimed trial %d", process_id(), trial.number)
            try:
                outcome = run_trial(shared, trial, trainer, lambda: running["closed"])
            except KeyboardInterrupt:
                _give_back(shared, trial)
                raise
            finally:
                running.update(id=None, number=None)
            done, since = done + 1, time.time()
            log.info("worker %s: trial %d %s", process_id(), trial.number, outcome)
    return WorkerReport(done, f"ran {done} trial(s), as --max-trials asked")


def _give_back(shared: SharedStudy, trial) -> None:
    """Ctrl-C or SIGTERM: mark the running trial lost so the coordinator replaces it
    now rather than after its heartbeat goes stale."""
    shared.timeout = 5.0
    try:
        shared.fail(trial, "worker stopped by a signal", lost=True)
    except (StorageError, Exception) as exc:  # best effort: the heartbeat covers it
        log.warning("could not give trial %d back: %s", trial.number, exc)

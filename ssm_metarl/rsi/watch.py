"""The coordinator's watch over one round: wait for its trials, replace lost ones, and
never wait for workers that are not there.

While a round runs, the coordinator (every half second): fails running trials whose
heartbeat went stale and enqueues a replacement for each trial lost that way (or given
back by a stopped worker), up to one per candidate; runs waiting trials itself when it
works inline, or when no worker has beaten for ``stale_seconds``; and gives up on the
round's unfinished trials after `timeout` seconds. So a round ends even if every
worker is killed. Chapter 5.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from .session import Session
from .study import SharedStudy, process_id
from .worker import run_trial

__all__ = ["wait_for_round"]

log = logging.getLogger(__name__)


def wait_for_round(
    shared: SharedStudy,
    round_id: str,
    n: int,
    stale_seconds: float,
    inline: bool,
    trainer: Callable,
    timeout: float | None = None,
    session: Session | None = None,
    progress: Callable | None = None,
) -> list:
    """Until `n` trials of the round have finished (trials lost and replaced do not
    count): the round's finished trials, lost ones included, in trial order.
    Chapter 5."""
    start = time.time()
    deadline = None if timeout is None else start + timeout
    replaced, last_worker, warned = 0, start, False
    TrialState = shared.TrialState
    while True:
        if session is not None:
            session.check()
        trials = shared.trials(round_id)
        replacing = {t.user_attrs.get("replaces") for t in trials}
        for t in trials:
            lost = t.state == TrialState.FAIL and t.user_attrs.get("lost")
            if lost and t.number not in replacing and replaced < n:
                shared.enqueue(round_id, replaces=t.number)
                replacing.add(t.number)
                replaced += 1
                log.warning(
                    "trial %d was lost (%s); replaced",
                    t.number,
                    t.user_attrs.get("reason"),
                )
        finished = [t for t in trials if t.state.is_finished()]
        counted = [t for t in finished if t.number not in replacing]
        if len(counted) >= n:
            return sorted(finished, key=lambda t: t.number)
        if deadline is not None and time.time() > deadline:
            for t in shared.trials(
                round_id, states=(TrialState.RUNNING, TrialState.WAITING)
            ):
                shared.fail(t, f"timed out after {timeout:.0f} s")
            deadline = None
            continue
        if shared.workers_alive(stale_seconds):
            last_worker = time.time()
        alone = time.time() - last_worker > stale_seconds
        if alone and not inline and not warned:
            warned = True
            log.warning(
                "no worker has beaten for %.0f s: the coordinator runs the round's "
                "waiting trials itself",
                stale_seconds,
            )
        trial = shared.claim(round_id) if inline or alone else None
        if trial is not None:
            log.info("coordinator %s: claimed trial %d", process_id(), trial.number)
            run_trial(shared, trial, trainer)
            if progress:
                progress()
            continue
        shared.fail_stale(round_id, stale_seconds)
        time.sleep(0.5)

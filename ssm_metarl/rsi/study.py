"""The Optuna study that a coordinator and its workers share: rounds of trials, who is
alive, and who owns the study.

The study's user attributes are the notice board. ``round`` holds the cycle's call for
proposals (the current model, its scores, the settings); ``coordinator`` says which
process runs the loop and when it last beat; ``run`` names the run that owns the study;
``worker:HOST:PID`` says when each worker last beat. A trial is claimed by one atomic
state change (WAITING to RUNNING) in the storage, and a trial whose worker stops
beating is failed and replaced. Chapter 5.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from .search import search_distributions
from .storage import StorageError, StorageURL, make_storage, parse_storage, retrying

__all__ = ["SharedStudy", "process_id"]

log = logging.getLogger(__name__)


def process_id() -> str:
    """``HOST:PID`` of this process: how workers and coordinators are named.
    Chapter 5."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _optuna():
    """Optuna (the ``rsi`` extra), imported on first use, quietly."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class SharedStudy:
    """An Optuna study several processes share through one storage URL (chapter 5).

    `create=False` (a worker) waits up to `wait` seconds for the coordinator to create
    the study instead of creating one under a mistyped name.
    """

    def __init__(
        self,
        storage: str | StorageURL,
        name: str,
        sampler_seed: int | None = None,
        create: bool = True,
        wait: float = 0.0,
        timeout: float = 120.0,
    ):
        optuna = _optuna()
        self.optuna, self.timeout = optuna, timeout
        self.where = (
            storage if isinstance(storage, StorageURL) else parse_storage(storage)
        )
        self.storage, self.name = make_storage(self.where, timeout), name
        self.TrialState = optuna.trial.TrialState
        self.sampler = optuna.samplers.TPESampler(
            seed=sampler_seed, n_startup_trials=4, constant_liar=True
        )
        deadline = time.time() + wait
        while not create and not self.exists():
            if time.time() > deadline:
                raise StorageError(
                    f"no study {name!r} in {self.where.masked} after {wait:.0f} s: "
                    "start the coordinator (rsi --storage URL --study NAME) or check "
                    "--study"
                )
            time.sleep(1.0)
        self._open()

    def _open(self) -> None:
        optuna = self.optuna

        def open_study():
            if self.exists():  # loading writes nothing (creating twice would)
                return optuna.load_study(
                    study_name=self.name, storage=self.storage, sampler=self.sampler
                )
            return optuna.create_study(
                storage=self.storage,
                study_name=self.name,
                direction="maximize",
                load_if_exists=True,
                sampler=self.sampler,
            )

        try:
            self.study = self._retry(open_study, "opening the study")
        except ValueError as exc:  # e.g. a study of several objectives
            raise StorageError(self._foreign(str(exc))) from None
        if len(self.study.directions) != 1 or self.study.direction.name != "MAXIMIZE":
            raise StorageError(self._foreign("it minimizes"))
        self.study_id = self.study._study_id
        self._check_space()

    def _foreign(self, why: str) -> str:
        return (
            f"study {self.name!r} in {self.where.masked} is not this loop's ({why}; "
            "the loop maximizes one improvement); use another --study"
        )

    def _check_space(self) -> None:
        """Refuse a study whose trials come from another search space (Optuna's sampler
        would fail on them with an IndexError)."""
        ours = search_distributions()
        for t in self.trials(states=(self.TrialState.COMPLETE,)):
            for name, dist in t.distributions.items():
                if ours.get(name) != dist:
                    raise StorageError(
                        f"study {self.name!r} in {self.where.masked} holds trials of "
                        f"another search space ({name}: {dist} there, "
                        f"{ours.get(name)} here); use another --study"
                    )

    def _retry(self, call, what: str):
        return retrying(
            call, f"{what} ({self.name!r} in {self.where.masked})", self.timeout
        )

    def exists(self) -> bool:
        names = self._retry(
            lambda: [s.study_name for s in self.storage.get_all_studies()],
            "listing the studies",
        )
        return self.name in names

    def reset(self) -> None:
        """Delete the study and create it empty: a new run that reuses the name."""
        self._retry(lambda: self.storage.delete_study(self.study_id), "resetting")
        self._open()

    # -- the notice board ------------------------------------------------------------
    def attrs(self) -> dict:
        """The study's user attributes (the notice board), read afresh."""
        return self._retry(
            lambda: self.storage.get_study_user_attrs(self.study_id),
            "reading the study",
        )

    def post(self, key: str, value) -> None:
        self._retry(
            lambda: self.storage.set_study_user_attr(self.study_id, key, value),
            f"writing {key}",
        )

    def trials(self, round_id: str | None = None, states=None) -> list:
        """Frozen trials, optionally only the given round's and states."""
        found = self._retry(
            lambda: self.study.get_trials(deepcopy=False, states=states),
            "reading the trials",
        )
        return [
            t
            for t in found
            if round_id is None or t.user_attrs.get("round") == round_id
        ]

    def workers_alive(self, stale: float) -> list[str]:
        """The workers that beat within the last `stale` seconds."""
        now = time.time()
        return [
            key.removeprefix("worker:")
            for key, value in self.attrs().items()
            if key.startswith("worker:") and now - value.get("beat", 0) < stale
        ]

    # -- rounds and trials -------------------------------------------------------------
    def _id(self, trial) -> int:
        return getattr(trial, "_trial_id", None) or self._retry(
            lambda: self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number
            ),
            "finding a trial",
        )

    def post_round(self, round_info: dict, n: int) -> None:
        """Publish a cycle's call for proposals; earlier rounds' unfinished trials are
        failed."""
        for t in self.trials(states=(self.TrialState.WAITING, self.TrialState.RUNNING)):
            self.fail(
                t, "superseded by a newer round (the agent restarted or moved on)"
            )
        self.post("round", round_info)
        for _ in range(n):
            self.enqueue(round_info["id"])

    def enqueue(self, round_id: str, **attrs) -> None:
        self._retry(
            lambda: self.study.enqueue_trial(
                {}, user_attrs={"round": round_id, **attrs}, skip_if_exists=False
            ),
            "enqueueing a trial",
        )

    def fail(self, trial, reason: str, lost: bool = False) -> bool:
        """Mark a waiting or running trial failed with its reason (`lost`: its worker
        went away, so the coordinator replaces it); False if it had finished."""
        trial_id, running = self._id(trial), self.TrialState.RUNNING

        def close():
            self.storage.set_trial_user_attr(trial_id, "reason", reason)
            if lost:
                self.storage.set_trial_user_attr(trial_id, "lost", True)
            if self.storage.get_trial(trial_id).state == self.TrialState.WAITING:
                self.storage.set_trial_state_values(trial_id, state=running)
            self.storage.set_trial_state_values(trial_id, state=self.TrialState.FAIL)

        try:
            self._retry(close, "failing a trial")
        except self.optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def claim(self, round_id: str | None = None):
        """Atomically move one waiting trial (of `round_id`, if given) to running and
        return it, or None."""
        for t in self.trials(round_id, states=(self.TrialState.WAITING,)):
            trial_id = self._id(t)
            try:
                won = self._retry(
                    lambda i=trial_id: self.storage.set_trial_state_values(
                        i, state=self.TrialState.RUNNING
                    ),
                    "claiming a trial",
                )
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue
            if won:  # ours now; reading it back may meet a restarting database too
                return self._retry(
                    lambda i=trial_id: self.optuna.Trial(self.study, i),
                    "reading a claimed trial",
                )
        return None

    def fail_stale(self, round_id: str, stale_seconds: float) -> list:
        """Fail this round's running trials whose worker stopped beating (killed,
        lost); they are marked lost, so the coordinator replaces them."""
        now, failed = time.time(), []
        for t in self.trials(round_id, states=(self.TrialState.RUNNING,)):
            start = t.datetime_start.timestamp() if t.datetime_start else now
            beat = t.user_attrs.get("heartbeat", start)
            if now - beat > stale_seconds and self.fail(
                t, f"worker lost: no heartbeat for {now - beat:.0f} s", lost=True
            ):
                failed.append(t.number)
        return failed

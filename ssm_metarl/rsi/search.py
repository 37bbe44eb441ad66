"""Optuna's side of recursive self-improvement: the search space, the shared study, and
the worker.

A *round* is one cycle's call for proposals. The agent (`ssm_metarl.rsi.agent`) writes
the current model and the cycle's settings into the study's user attributes and enqueues
one empty trial per candidate. Any worker (the agent's own process, or
`python -m ssm_metarl rsi-worker` on this or another machine) claims a waiting trial,
lets Optuna's sampler suggest its hyperparameters and architecture, trains the
candidate, scores it on the validation tasks with the cycle's seed, and tells the study
the mean paired improvement. The storage URL is all the workers share: a journal file
here, a PostgreSQL or MySQL URL on a cluster. Optuna is imported only when a study is
opened. Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from ..cartpole.tasks import get_family
from ..io.validation import check_choice, check_int, check_positive, check_unit_interval
from ..meta.evaluation import evaluate_adaptation
from ..meta.maml import MetaMAML
from ..meta.maml_rl import MetaRLConfig, _seed, policy_gradient_loss
from ..meta.training import meta_epoch
from ..models.policy import SSMPolicy
from ..models.ssm import StateSpaceModel

__all__ = [
    "RSIConfig",
    "Candidate",
    "SEARCH_SPACE",
    "suggest",
    "train_candidate",
    "validation_tasks",
    "score",
    "unsafe_reason",
    "SharedStudy",
    "run_worker",
]

log = logging.getLogger(__name__)

#: What Optuna may propose. Step sizes on a log scale; growth in whole blocks of 8
#: units, the size at which `StateSpaceModel.widened` is bit-exact on this CPU
#: (chapter 5).
SEARCH_SPACE = {
    "inner_lr": (0.03, 1.0),
    "outer_lr": (1e-4, 3e-3),
    "max_grad_norm": (0.3, 3.0),
    "grow_state": (0, 8),
    "grow_hidden": (0, 8, 16),
}
#: Seed of the extra validation tasks drawn when more than the family's fixed 16 are
#: asked for.
VALIDATION_SEED = 2_024


@dataclass
class RSIConfig:
    """One self-improvement run: the task family, the budget per candidate, the
    acceptance rule and the safety monitor. Defined in chapter 5
    (`05_recursive_self_improvement`).
    """

    # task family whose held-out return after one adaptation step is improved
    family: str = "goal"
    candidates: int = 2  # proposals (Optuna trials) per cycle
    # meta-training epochs per candidate (0: only the proposal's step size and growth)
    train_epochs: int = 10
    tasks_per_epoch: int = 10  # tasks per meta-training epoch of a candidate
    # support episodes per task (training and the one adaptation step)
    episodes: int = 10
    eval_episodes: int = 10  # fresh episodes per task that score an adapted policy
    # tasks that decide (the family's fixed validation split, topped up)
    validation_tasks: int = 16
    test_tasks: int = 48  # held-out tasks that only report, never decide
    max_train_seconds: float = 120.0  # wall-time budget of one candidate's training
    # environment-step budget of one candidate's training
    max_env_steps: int = 5_000_000
    # "ci": accept if the paired improvement's CI lies above margin; "naive": if its
    # mean does
    rule: str = "ci"
    # of the CI; split over the cycle's candidates (Bonferroni) when there are several
    confidence: float = 0.95
    margin: float = 0.0  # an improvement must exceed this many return points
    # a candidate scoring below this fraction of the current return has diverged
    instability: float = 0.5
    # halt when the current model falls below this fraction of its first score
    floor_fraction: float = 0.5
    # halt after this many consecutive cycles whose every candidate was unsafe
    max_emergency_stops: int = 2
    # a running trial without a heartbeat for this long is marked failed
    stale_seconds: float = 600.0
    seed: int = 0

    def __post_init__(self):
        check_choice("rule", self.rule, ("ci", "naive"))
        for name in (
            "candidates",
            "tasks_per_epoch",
            "episodes",
            "eval_episodes",
            "validation_tasks",
            "test_tasks",
            "max_env_steps",
            "max_emergency_stops",
        ):
            check_int(name, getattr(self, name))
        check_int("train_epochs", self.train_epochs, minimum=0)
        for name in ("max_train_seconds", "stale_seconds"):
            check_positive(name, getattr(self, name))
        for name in ("confidence", "instability", "floor_fraction"):
            check_unit_interval(name, getattr(self, name))
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin}")
        get_family(self.family)  # a clear error for an unknown family, before any work

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Candidate:
    """What the agent improves: a model and the step size it adapts with (chapter 5)."""

    model: StateSpaceModel
    inner_lr: float


def suggest(trial) -> dict:
    """Ask Optuna's `trial` for one proposal from `SEARCH_SPACE` (chapter 5)."""
    space = SEARCH_SPACE
    return {
        "inner_lr": trial.suggest_float("inner_lr", *space["inner_lr"], log=True),
        "outer_lr": trial.suggest_float("outer_lr", *space["outer_lr"], log=True),
        "max_grad_norm": trial.suggest_float(
            "max_grad_norm", *space["max_grad_norm"], log=True
        ),
        "grow_state": trial.suggest_categorical("grow_state", space["grow_state"]),
        "grow_hidden": trial.suggest_categorical("grow_hidden", space["grow_hidden"]),
    }


def train_candidate(
    current: Candidate,
    params: dict,
    config: RSIConfig,
    seed: int,
    heartbeat: Callable[[], None] = lambda: None,
) -> tuple[Candidate, dict]:
    """Build and train one proposal: widen a copy of the current model (same function at
    first), then meta-train it with MAML for `train_epochs` epochs under the step and
    time budgets. The current model is never touched. Defined in chapter 5
    (`05_recursive_self_improvement`)."""
    model = current.model.widened(
        current.model.state_dim + int(params.get("grow_state", 0)),
        current.model.hidden_dim + int(params.get("grow_hidden", 0)),
        seed=seed,
    )
    cfg = MetaRLConfig(
        family=config.family,
        epochs=max(1, config.train_epochs),
        tasks_per_epoch=config.tasks_per_epoch,
        episodes=config.episodes,
        inner_lr=params["inner_lr"],
        outer_lr=params["outer_lr"],
        max_grad_norm=params["max_grad_norm"],
        seed=seed,
    )
    policy, family, start, env_steps, epochs = (
        SSMPolicy(model),
        get_family(config.family),
        time.perf_counter(),
        0,
        0,
    )
    maml = MetaMAML(
        model,
        cfg.inner_lr,
        cfg.outer_lr,
        inner_steps=1,
        max_grad_norm=cfg.max_grad_norm,
    )
    loss_fn = policy_gradient_loss(policy, cfg.clip)
    for epoch in range(config.train_epochs):
        row = meta_epoch(maml, policy, loss_fn, family, cfg, epoch)
        env_steps, epochs = env_steps + row["env_steps"], epochs + 1
        heartbeat()
        if (
            env_steps >= config.max_env_steps
            or time.perf_counter() - start >= config.max_train_seconds
        ):
            break
    info = {
        "epochs": epochs,
        "env_steps": env_steps,
        "seconds": time.perf_counter() - start,
        "skipped_updates": maml.skipped_updates,
    }
    return Candidate(model, float(params["inner_lr"])), info


def validation_tasks(family: str, n: int) -> list:
    """The `n` tasks that decide: the family's fixed validation split, topped up from
    the validation distribution with a fixed seed when `n` > 16. Never the test split
    (chapter 5)."""
    dist = get_family(family)
    tasks = list(dist.validation)[:n]
    return tasks + (
        dist.sample(n - len(tasks), seed=VALIDATION_SEED, split="validation")
        if len(tasks) < n
        else []
    )


def score(candidate: Candidate, tasks, config: RSIConfig, seed: int) -> np.ndarray:
    """Per-task return after one adaptation step (the metric being improved); `seed`
    pairs the episodes of every model scored in one cycle. Defined in chapter 5."""
    result = evaluate_adaptation(
        candidate.model,
        tasks,
        steps=(1,),
        episodes=config.episodes,
        eval_episodes=config.eval_episodes,
        inner_lr=candidate.inner_lr,
        seed=seed,
    )
    return np.asarray(result.returns[1], dtype=np.float64)


def unsafe_reason(
    candidate: Candidate,
    returns=None,
    current_mean: float | None = None,
    instability: float = 0.5,
) -> str | None:
    """Why the safety monitor rejects a candidate, or None: non-finite weights or step
    size, non-finite returns, or a collapse below `instability` x the current return.
    Defined in chapter 5."""
    bad = [
        n for n, p in candidate.model.named_parameters() if not torch.isfinite(p).all()
    ]
    if bad or not math.isfinite(candidate.inner_lr):
        where = (
            f"{bad[0]} and {len(bad) - 1} more"
            if len(bad) > 1
            else (bad[0] if bad else "inner_lr")
        )
        return f"non-finite weights ({where})"
    if returns is not None and not np.all(np.isfinite(returns)):
        return "non-finite validation returns"
    if (
        returns is not None
        and current_mean is not None
        and np.mean(returns) < instability * current_mean
    ):
        return (
            f"diverged: validation return {np.mean(returns):.1f} < {instability:g} x "
            f"current {current_mean:.1f}"
        )
    return None


def encode_model(model: StateSpaceModel) -> dict:
    """A model as JSON-ready text (config + base64 weights), to travel through any
    Optuna storage."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return {
        "config": asdict(model.config),
        "state": base64.b64encode(buffer.getvalue()).decode(),
    }


def decode_model(data: dict) -> StateSpaceModel:
    """The inverse of `encode_model` (weights-only load: no code runs)."""
    model = StateSpaceModel(**data["config"])
    model.load_state_dict(
        torch.load(io.BytesIO(base64.b64decode(data["state"])), weights_only=True)
    )
    return model


def _optuna():
    """Optuna, imported on first use (it is the optional `rsi` extra). Its progress bars
    are never used, so tqdm's notice about missing notebook widgets is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import optuna
    return optuna


def make_storage(url: str):
    """An Optuna storage from a URL: `journal:PATH` (or a path ending in .log) is a
    journal file, anything else (sqlite:///, postgresql://, mysql://) Optuna's own RDB
    storage.
    """
    optuna = _optuna()

    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(
            JournalFileBackend(url.removeprefix("journal:"))
        )
    return optuna.storages.RDBStorage(url)


class SharedStudy:
    """An Optuna study that several processes share through one storage URL
    (chapter 5)."""

    def __init__(self, storage: str, name: str, sampler_seed: int | None = None):
        optuna = _optuna()

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.url, self.storage = optuna, storage, make_storage(storage)
        sampler = optuna.samplers.TPESampler(
            seed=sampler_seed, n_startup_trials=4, constant_liar=True
        )
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=name,
            direction="maximize",
            load_if_exists=True,
            sampler=sampler,
        )
        self.study_id = self.storage.get_study_id_from_name(name)
        self.TrialState = optuna.trial.TrialState

    def trials(self, round_id: str | None = None, states=None) -> list:
        """Frozen trials, optionally only the given round's and states."""
        found = self.study.get_trials(deepcopy=False, states=states)
        return [
            t
            for t in found
            if round_id is None or t.user_attrs.get("round") == round_id
        ]

    def _id(self, trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(
            self.study_id, trial.number
        )

    def post_round(self, round_info: dict, n: int) -> None:
        """Publish a cycle's call for proposals; earlier rounds' unfinished trials are
        failed."""
        for t in self.trials(states=(self.TrialState.WAITING, self.TrialState.RUNNING)):
            self.fail(
                t, "superseded by a newer round (the agent restarted or moved on)"
            )
        self.study.set_user_attr("round", round_info)
        for _ in range(n):
            self.study.enqueue_trial({}, user_attrs={"round": round_info["id"]})

    def fail(self, trial, reason: str) -> None:
        """Mark a waiting or running trial failed, with its reason, unless it already
        finished."""
        trial_id = self._id(trial)
        try:
            self.storage.set_trial_user_attr(trial_id, "reason", reason)
            if trial.state == self.TrialState.WAITING:
                self.storage.set_trial_state_values(
                    trial_id, state=self.TrialState.RUNNING
                )
            self.storage.set_trial_state_values(trial_id, state=self.TrialState.FAIL)
        except self.optuna.exceptions.UpdateFinishedTrialError:
            pass

    def claim(self):
        """Atomically move one waiting trial to running and return it (None if there is
        none)."""
        for t in self.trials(states=(self.TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(
                    self._id(t), state=self.TrialState.RUNNING
                ):
                    return self.optuna.Trial(self.study, self._id(t))
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def fail_stale(self, round_id: str, stale_seconds: float) -> None:
        """Fail this round's running trials whose worker stopped beating (killed,
        lost)."""
        now = time.time()
        for t in self.trials(round_id, states=(self.TrialState.RUNNING,)):
            beat = t.user_attrs.get(
                "heartbeat", t.datetime_start.timestamp() if t.datetime_start else now
            )
            if now - beat > stale_seconds:
                self.fail(t, f"worker lost: no heartbeat for {now - beat:.0f} s")

    def run_trial(self, trial, trainer: Callable = train_candidate) -> None:
        """Train, check and score the proposal of one claimed trial, then tell the
        study."""
        info = self.study.user_attrs.get("round")
        if info is None or trial.user_attrs.get("round") != info["id"]:
            trial.set_user_attr("reason", "superseded: not the current round")
            return self.study.tell(trial, state=self.TrialState.FAIL)
        beat = lambda: trial.set_user_attr("heartbeat", time.time())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        beat()
        config, params = RSIConfig(**info["config"]), suggest(trial)
        current = Candidate(decode_model(info["model"]), info["inner_lr"])
        try:
            candidate, train_info = trainer(
                current, params, config, _seed(info["seed"], trial.number), beat
            )
        # a crashing proposal is a rejected proposal, never a crashed loop
        except Exception as exc:
            trial.set_user_attr(
                "reason", f"training raised {type(exc).__name__}: {exc}"
            )
            return self.study.tell(trial, state=self.TrialState.FAIL)
        trial.set_user_attr("train", train_info)
        reason = unsafe_reason(candidate)
        if reason is None:
            try:
                returns = score(
                    candidate,
                    validation_tasks(config.family, config.validation_tasks),
                    config,
                    info["seed"],
                )
            # e.g. NaN action probabilities after the adaptation step
            except (RuntimeError, ValueError) as exc:
                returns, reason = (
                    None,
                    f"non-finite adaptation ({type(exc).__name__}: {str(exc)[:80]})",
                )
            reason = reason or unsafe_reason(
                candidate,
                returns,
                float(np.mean(info["current_returns"])),
                config.instability,
            )
        if reason is not None and reason.startswith("non-finite"):
            trial.set_user_attr("unsafe", reason)
            return self.study.tell(trial, state=self.TrialState.FAIL)
        trial.set_user_attr("returns", [float(r) for r in returns])
        trial.set_user_attr("inner_lr", candidate.inner_lr)
        trial.set_user_attr("model", encode_model(candidate.model))
        if reason is not None:
            trial.set_user_attr("unsafe", reason)
        beat()
        self.study.tell(
            trial, float(np.mean(returns) - np.mean(info["current_returns"]))
        )

    def finished(self) -> bool:
        return bool(self.study.user_attrs.get("finished", False))


def run_worker(
    storage: str,
    study: str,
    trainer: Callable = train_candidate,
    poll: float = 1.0,
    idle_exit: float | None = None,
    max_trials: int | None = None,
) -> int:
    """The `rsi-worker` loop: claim waiting trials and run them until the study is
    marked finished, `max_trials` are done, or nothing arrived for `idle_exit` seconds.
    Returns the number of trials run. Defined in chapter 5
    (`05_recursive_self_improvement`)."""
    shared, done, idle_since = (
        SharedStudy(storage, study, sampler_seed=None),
        0,
        time.time(),
    )
    while not shared.finished() and (max_trials is None or done < max_trials):
        trial = shared.claim()
        if trial is None:
            if idle_exit is not None and time.time() - idle_since > idle_exit:
                break
            time.sleep(poll)
            continue
        shared.run_trial(trial, trainer)
        done, idle_since = done + 1, time.time()
        log.info("worker %d: finished trial %d", os.getpid(), trial.number)
    return done

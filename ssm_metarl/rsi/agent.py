"""Recursive self-improvement, safely: evaluate, let Optuna propose how the current
weights train on, keep a change only if it is measurably better.

`RecursiveSelfImprovementAgent.improve` runs one cycle: score the current model on the
validation tasks, publish a round of proposals to an Optuna study
(`ssm_metarl.rsi.study`), let workers train and score the candidates with the same
seeds, and accept the best one only if the sign-flip test finds its paired improvement
above zero (`decide`) and the agent's own re-scoring of it agrees
(`ssm_metarl.rsi.verify`). Every cycle ends with the run's state saved as one unit
(`ssm_metarl.rsi.state`), so a killed run resumes where it stopped; the test tasks are
scored for the record and never decide.
Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict
from typing import Any, Callable

import numpy as np

from ..cartpole.tasks import TaskDistribution, get_family
from ..meta.evaluation import TEST_SEED, test_tasks
from ..meta.maml_rl import _seed
from ..models.ssm import StateSpaceModel
from ..report.stats import bootstrap_ci
from .decision import CycleReport, decide  # noqa: F401 (decide: chapter 5's import)
from .run import PersistentRun, claim_study
from .search import Candidate, RSIConfig, score, train_candidate, validation_tasks
from .session import Session
from .study import SharedStudy
from .verify import candidate_entry, encode_model, verified_decision
from .watch import wait_for_round

__all__ = [
    "RSIConfig",
    "RSIHalted",
    "CycleReport",
    "decide",
    "RecursiveSelfImprovementAgent",
]

log = logging.getLogger(__name__)


class RSIHalted(RuntimeError):
    """The safety monitor stopped the loop (performance floor or repeated emergency
    stops); chapter 5."""


class RecursiveSelfImprovementAgent(PersistentRun):
    """The model card's agent, made safe: `improve()` runs one evaluate / propose /
    keep-or-roll-back cycle.

    `tasks_or_env` is a task family (a name such as "goal", or a `TaskDistribution`):
    held-out tasks are what make "better" measurable. `run_dir` holds the run's state
    (`agent.pt`, `history.json` and the archive of accepted models, saved as one unit)
    and, by default, the Optuna journal (`study.log`); an existing run there is resumed,
    and a setting given for the resume that differs from the run's is refused.
    `storage` may be any Optuna URL shared with `rsi-worker` processes; with
    `inline=True` this process also works on its own proposals.
    `trainer(current, params, config, seed, heartbeat)` builds a candidate (default:
    `ssm_metarl.rsi.search.train_candidate`). Defined in chapter 5
    (`05_recursive_self_improvement`).
    """

    def __init__(
        self,
        initial_model: StateSpaceModel,
        tasks_or_env: Any = "goal",
        device: str = "cpu",
        config: RSIConfig | None = None,
        seed: int | None = None,
        inner_lr: float = 0.01,
        run_dir: str | None = None,
        storage: str | None = None,
        study: str | None = None,
        inline: bool = True,
        trainer: Callable = train_candidate,
        resume: bool = True,
        progress: Callable | None = None,
    ):
        if device != "cpu":
            raise ValueError(
                f"device {device!r} is not supported: this book's models run on the "
                "CPU ('cpu')"
            )
        if isinstance(tasks_or_env, TaskDistribution):
            tasks_or_env = tasks_or_env.name
        if not isinstance(tasks_or_env, str):
            raise TypeError(
                "tasks_or_env must be a task family such as 'goal' (got "
                f"{type(tasks_or_env).__name__}): "
                "an environment is a single task, and improvement is measured on "
                "held-out tasks"
            )
        overrides = {"family": tasks_or_env, **({} if seed is None else {"seed": seed})}
        self.inline, self.trainer, self.progress = inline, trainer, progress
        self._shared, self._session = None, None
        self._open_run(
            run_dir, storage, study, config, overrides, resume, initial_model, inner_lr
        )

    # -- one cycle
    # --------------------------------------------------------------------------
    def study(self) -> SharedStudy:
        """The run's study, claimed by this process for the run (`Session`)."""
        if self._shared is None:
            # seeded by the cycle too, so a resumed run does not replay its first
            # proposals
            shared = SharedStudy(
                self.where,
                self.study_name,
                sampler_seed=_seed(self.config.seed, len(self.history)),
            )
            claim_study(
                shared, self.run_id, self.own_journal or self._replaces is not None
            )
            self._session = Session(shared, self.run_id, self.config.stale_seconds)
            self._shared = shared
            self._session.open()
        return self._shared

    def evaluate(
        self,
        candidate: Candidate | None = None,
        split: str = "validation",
        seed: int = 0,
    ) -> np.ndarray:
        """Per-task return after one adaptation step on the validation or the test
        tasks."""
        cfg, candidate = self.config, candidate or self.current
        if split == "test":
            return score(
                candidate,
                test_tasks(get_family(cfg.family), cfg.test_tasks),
                cfg,
                TEST_SEED,
            )
        return score(
            candidate, validation_tasks(cfg.family, cfg.validation_tasks), cfg, seed
        )

    def improve(self, timeout: float | None = None) -> CycleReport:
        """One cycle: evaluate, propose (Optuna), train and score candidates, verify
        the best, accept or keep, save."""
        if self.halted:
            raise RSIHalted(self.halted)
        start, cycle, cfg = time.perf_counter(), len(self.history), self.config
        shared = self.study()  # beats from here on, so workers wait for this round
        seed = _seed(cfg.seed, cycle, 17)
        current = self.evaluate(seed=seed)
        if self.floor is None:
            self.floor = cfg.floor_fraction * float(current.mean())
        if current.mean() < self.floor:
            self._halt(
                f"performance floor: the current model scores {current.mean():.1f} on "
                "the validation tasks, "
                f"below the floor {self.floor:.1f}; the last accepted model is "
                f"{self.best_checkpoint}"
            )
        round_id = f"{self.run_id}-{cycle}-{uuid.uuid4().hex[:6]}"
        shared.post_round(
            {
                "id": round_id,
                "cycle": cycle,
                "seed": seed,
                "inner_lr": self.current.inner_lr,
                "model": encode_model(self.current_model),
                "current_returns": current.tolist(),
                "config": cfg.to_dict(),
            },
            cfg.candidates,
        )
        trials = wait_for_round(
            shared,
            round_id,
            cfg.candidates,
            cfg.stale_seconds,
            self.inline,
            self.trainer,
            timeout,
            self._session,
            self.progress,
        )
        candidates = [candidate_entry(t, cfg.validation_tasks) for t in trials]
        chosen, reason, verdicts, model = verified_decision(
            current,
            candidates,
            trials,
            cfg,
            self.current_model,
            self.current.inner_lr,
            lambda found: self.evaluate(found, seed=seed),
            cycle,
        )
        if chosen is not None:
            self.current = Candidate(
                model, float(trials[chosen].user_attrs["inner_lr"])
            )
            self._archive(cycle, float(np.mean(candidates[chosen]["returns"])))
        emergency = bool(candidates) and all(
            v["status"] in ("unsafe", "failed") for v in verdicts
        )
        self.emergencies = self.emergencies + 1 if emergency else 0
        test = self.evaluate(split="test")
        for c, v in zip(candidates, verdicts):
            returns = c.pop("returns")
            c.update(
                v, validation_mean=None if returns is None else float(np.mean(returns))
            )
        report = CycleReport(
            cycle,
            bootstrap_ci(current).to_dict(),
            candidates,
            None if chosen is None else trials[chosen].number,
            reason,
            bootstrap_ci(test).to_dict(),
            test.tolist(),
            asdict(self.current_model.config),
            self.current.inner_lr,
            time.perf_counter() - start,
            emergency,
        )
        self.history.append(report)
        if self.emergencies >= cfg.max_emergency_stops:
            self.halted = (
                f"{self.emergencies} consecutive emergency stops (no candidate could "
                "be scored safely); "
                f"the last accepted model is {self.best_checkpoint}"
            )
        self.save()
        log.info("cycle %d: %s", cycle, reason)
        return report

    def _halt(self, message: str) -> None:
        self.halted = message
        self.save()
        raise RSIHalted(message)

    def finish(self) -> None:
        """Tell every worker sharing the study that the run is over (they exit), and
        let go of the study and the run directory."""
        if self._session is not None:
            self._session.close(finished=True)
            self._session, self._shared = None, None
        self.lock.release()

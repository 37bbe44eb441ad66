"""Recursive self-improvement, safely: evaluate, let Optuna propose, keep a change only
if it is measurably better.

`RecursiveSelfImprovementAgent.improve` runs one cycle: score the current model on the
validation tasks, publish a round of proposals to an Optuna study
(`ssm_metarl.rsi.search`), let workers train and score the candidates with the same
seeds, and accept the best one only if the confidence interval of its paired improvement
lies above zero (`decide`). Every cycle ends with an atomic checkpoint, so a killed run
resumes where it stopped; the test tasks are scored for the record and never decide.
Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..cartpole.tasks import TaskDistribution, get_family
from ..io.atomic import save_json
from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..meta.evaluation import TEST_SEED, held_out_tasks
from ..meta.maml_rl import _seed
from ..models.ssm import StateSpaceModel
from ..report.stats import Estimate, bootstrap_ci
from .search import (
    Candidate,
    RSIConfig,
    SharedStudy,
    decode_model,
    encode_model,
    score,
    train_candidate,
    validation_tasks,
)

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


def decide(
    current, candidates: list[dict], config: RSIConfig, seed: int = 0
) -> tuple[int | None, str, list[dict]]:
    """The acceptance rule. `current` holds the current model's per-task validation
    returns; each candidate dict its own (`returns`, same tasks and seeds) or an
    `unsafe` reason.

    Returns (index of the accepted candidate or None, the reason, each candidate's
    verdict). With `rule="ci"` the best candidate (largest mean paired improvement) is
    accepted only if the lower end of the CI of that improvement exceeds `margin`. With
    several candidates the confidence is raised to 1 - (1 - confidence)/K (Bonferroni),
    because picking the best of K noisy scores favours luck. `rule="naive"` accepts any
    positive mean. Defined in chapter 5.
    """
    current = np.asarray(current, dtype=np.float64)
    safe = [
        i
        for i, c in enumerate(candidates)
        if c.get("returns") is not None and not c.get("unsafe")
    ]
    level = 1 - (1 - config.confidence) / max(1, len(safe))
    verdicts = []
    for i, c in enumerate(candidates):
        if i not in safe:
            verdicts.append(
                {
                    "status": "unsafe" if c.get("unsafe") else "failed",
                    "reason": c.get("unsafe") or c.get("reason") or "no result",
                }
            )
            continue
        gain = bootstrap_ci(
            np.asarray(c["returns"]) - current, confidence=level, seed=seed
        )
        verdicts.append(
            {"status": "scored", "improvement": gain.to_dict(), "reason": ""}
        )
    if not safe:
        return None, "no candidate was safe to score", verdicts
    best = max(safe, key=lambda i: verdicts[i]["improvement"]["mean"])
    gain = Estimate(**verdicts[best]["improvement"])
    passed = (
        gain.mean > config.margin
        if config.rule == "naive"
        else gain.low > config.margin
    )
    for i in safe:
        verdicts[i]["status"] = "accepted" if (i == best and passed) else "rejected"
        verdicts[i]["reason"] = ("best, and " if i == best else "not the best; ") + (
            f"improvement {Estimate(**verdicts[i]['improvement'])} "
            + (
                "(mean above margin)"
                if config.rule == "naive"
                else f"({100 * level:.1f}% CI)"
            )
        )
    if passed:
        return (
            best,
            f"accepted trial {candidates[best].get('trial')}: improvement {gain} lies "
            f"above {config.margin:g}",
            verdicts,
        )
    what = "mean" if config.rule == "naive" else f"{100 * level:.1f}% CI"
    return (
        None,
        f"kept the current model: the best improvement {gain} ({what}) does not lie "
        f"above {config.margin:g}",
        verdicts,
    )


@dataclass
class CycleReport:
    """One cycle: the current model's scores, every proposal with its verdict, the
    decision and why, and the test score of the model kept (recorded, never used to
    decide). Chapter 5.
    """

    cycle: int
    # the current model's Estimate on the validation tasks, before the decision
    validation: dict
    # trial, params, train info, validation mean, improvement Estimate, status, reason
    candidates: list[dict]
    accepted: int | None  # the accepted trial's number, or None
    reason: str
    test: dict  # Estimate of the model kept after this cycle, on the test tasks
    test_returns: list[float]
    model_config: dict
    inner_lr: float
    seconds: float
    # no candidate could be scored safely (all unsafe or failed)
    emergency: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CycleReport":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class RecursiveSelfImprovementAgent:
    """The model card's agent, made safe: `improve()` runs one evaluate / propose /
    keep-or-roll-back cycle.

    `tasks_or_env` is a task family (a name such as "goal", or a `TaskDistribution`):
    held-out tasks are what make "better" measurable. `run_dir` holds the checkpoint
    (`agent.pt`), the history (`history.json`), the archive of accepted models and, by
    default, the Optuna journal (`study.log`); an existing run there is resumed.
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
        study: str = "rsi",
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
        config = config or RSIConfig()
        overrides = {"family": tasks_or_env, **({} if seed is None else {"seed": seed})}
        self.config = RSIConfig(**{**config.to_dict(), **overrides})
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="rsi-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.storage = storage or f"journal:{self.run_dir / 'study.log'}"
        self.study_name, self.inline, self.trainer, self.progress = (
            study,
            inline,
            trainer,
            progress,
        )
        self.current = Candidate(initial_model, float(inner_lr))
        self.history: list[CycleReport] = []
        self.archive: list[dict] = []
        self.floor: float | None = None
        self.emergencies, self.halted = 0, None
        if resume and (self.run_dir / "agent.pt").exists():
            self._load()
        else:
            self._archive(-1, None)
        self._shared: SharedStudy | None = None

    # -- state
    # ------------------------------------------------------------------------------
    @property
    def current_model(self) -> StateSpaceModel:
        return self.current.model

    @property
    def best_checkpoint(self) -> Path:
        """The archived checkpoint of the model in use (the last accepted one, or the
        initial one)."""
        return Path(self.archive[-1]["path"])

    def _archive(self, cycle: int, validation: float | None) -> None:
        name = "initial.pth" if cycle < 0 else f"cycle_{cycle:03d}.pth"
        path = self.current_model.save(
            self.run_dir / "archive" / name, extra={"inner_lr": self.current.inner_lr}
        )
        self.archive.append(
            {
                "cycle": cycle,
                "path": str(path),
                "inner_lr": self.current.inner_lr,
                "validation": validation,
            }
        )

    def save(self) -> Path:
        """Write the agent atomically: `agent.pt` (current weights and state) and
        `history.json`."""
        state = {
            "model_config": asdict(self.current_model.config),
            "inner_lr": self.current.inner_lr,
            "history": [r.to_dict() for r in self.history],
            "archive": self.archive,
            "floor": self.floor,
            "emergencies": self.emergencies,
            "halted": self.halted,
            "storage": self.storage,
            "study": self.study_name,
        }
        save_json(
            self.run_dir / "history.json", {"config": self.config.to_dict(), **state}
        )
        return save_checkpoint(
            self.run_dir / "agent.pt",
            kind="RSIAgent",
            config=self.config.to_dict(),
            state_dict=self.current_model.state_dict(),
            extra=state,
        )

    def _load(self) -> None:
        ckpt = load_checkpoint(self.run_dir / "agent.pt", kind="RSIAgent")
        extra = ckpt.extra
        model = StateSpaceModel(**extra["model_config"])
        model.load_state_dict(ckpt.state_dict)
        self.current = Candidate(model, float(extra["inner_lr"]))
        self.history = [CycleReport.from_dict(r) for r in extra["history"]]
        self.archive, self.floor, self.emergencies = (
            extra["archive"],
            extra["floor"],
            extra["emergencies"],
        )
        self.halted = extra["halted"]
        log.info("resumed %s after %d cycle(s)", self.run_dir, len(self.history))

    def rollback(self, cycle: int = -1) -> StateSpaceModel:
        """Make the model archived at `cycle` (-1: the initial one) current again, and
        save."""
        entry = next(e for e in self.archive if e["cycle"] == cycle)
        self.current = Candidate(StateSpaceModel.load(entry["path"]), entry["inner_lr"])
        self.archive.append(dict(entry))
        self.save()
        return self.current_model

    # -- one cycle
    # --------------------------------------------------------------------------
    def study(self) -> SharedStudy:
        if self._shared is None:
            # seeded by the cycle too, so a resumed run does not replay its first
            # proposals
            self._shared = SharedStudy(
                self.storage,
                self.study_name,
                sampler_seed=_seed(self.config.seed, len(self.history)),
            )
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
                held_out_tasks(get_family(cfg.family), cfg.test_tasks),
                cfg,
                TEST_SEED,
            )
        return score(
            candidate, validation_tasks(cfg.family, cfg.validation_tasks), cfg, seed
        )

    def improve(self, timeout: float | None = None) -> CycleReport:
        """One cycle: evaluate, propose (Optuna), train and score candidates, accept or
        keep, checkpoint."""
        if self.halted:
            raise RSIHalted(self.halted)
        start, cycle, cfg = time.perf_counter(), len(self.history), self.config
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
        round_id = f"{cycle}-{uuid.uuid4().hex[:8]}"
        shared = self.study()
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
        trials = self._wait(shared, round_id, timeout)
        candidates = [
            {
                "trial": t.number,
                "params": dict(t.params),
                "train": t.user_attrs.get("train"),
                "returns": t.user_attrs.get("returns"),
                "unsafe": t.user_attrs.get("unsafe"),
                "reason": t.user_attrs.get("reason"),
                "state": t.state.name,
                "worker": t.user_attrs.get("worker"),
            }
            for t in trials
        ]
        chosen, reason, verdicts = decide(current, candidates, cfg, seed=cycle)
        if chosen is not None:
            attrs = trials[chosen].user_attrs
            self.current = Candidate(
                decode_model(attrs["model"]), float(attrs["inner_lr"])
            )
            self._archive(cycle, float(np.mean(attrs["returns"])))
        emergency = bool(candidates) and all(
            v["status"] in ("unsafe", "failed") for v in verdicts
        )
        self.emergencies = self.emergencies + 1 if emergency else 0
        test = self.evaluate(split="test")
        for c, v in zip(candidates, verdicts):
            c.update(
                v,
                validation_mean=None
                if c["returns"] is None
                else float(np.mean(c["returns"])),
            )
            c.pop("returns")
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

    def _wait(self, shared: SharedStudy, round_id: str, timeout: float | None) -> list:
        """Until every trial of the round has finished: work on them here (inline) or
        wait for workers."""
        n, deadline = (
            self.config.candidates,
            None if timeout is None else time.time() + timeout,
        )
        while True:
            finished = [t for t in shared.trials(round_id) if t.state.is_finished()]
            if len(finished) >= n:
                return sorted(finished, key=lambda t: t.number)[:n]
            if deadline is not None and time.time() > deadline:
                for t in shared.trials(
                    round_id,
                    states=(shared.TrialState.RUNNING, shared.TrialState.WAITING),
                ):
                    shared.fail(t, f"timed out after {timeout:.0f} s")
                continue
            trial = shared.claim() if self.inline else None
            if trial is not None:
                shared.run_trial(trial, self.trainer)
                if self.progress:
                    self.progress()
            else:
                shared.fail_stale(round_id, self.config.stale_seconds)
                time.sleep(0.5)

    def finish(self) -> None:
        """Tell every worker sharing the study that the run is over (they exit)."""
        self.study().study.set_user_attr("finished", True)

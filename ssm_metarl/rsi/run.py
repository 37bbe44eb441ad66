"""What a run is: its identity, the settings a resume must repeat, the study it owns.

A run is a run directory plus a study. The directory's state records the run's id, its
settings, the starting model's fingerprint, the storage (password masked) and the
study's name. A resume must repeat all of them, like ``train``'s resume: a different
value is refused with one line naming the flag, never silently continued. The study
carries the run's id on its notice board (``run``); a run never takes over a study
that holds another run's trials, and a study it owns is reset explicitly when the run
starts afresh. Chapter 5.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import torch

from ..models.ssm import StateSpaceModel
from .decision import CycleReport
from .search import Candidate, RSIConfig
from .state import RunLock, has_state, load_state, save_state
from .storage import StorageError, parse_storage
from .study import SharedStudy

__all__ = [
    "OPERATIONAL",
    "PersistentRun",
    "weights_digest",
    "resume_conflict",
    "run_storage",
    "claim_study",
]

log = logging.getLogger(__name__)

#: Settings that change how the run is operated, not what it computes: a resume may
#: change them.
OPERATIONAL = ("stale_seconds",)
FRESH = "pass the run's own flags to resume it, or --no-resume to start afresh (or "


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's weights (names, shapes and values): the starting model's
    fingerprint in the run's state. Chapter 5."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def resume_conflict(saved: dict, run_dir, **given) -> str | None:
    """The first setting given for a resume that differs from the run's, as one line
    naming the flag, or None. `given` holds only what the user set: ``config`` (an
    RSIConfig), ``initial`` (the starting model's digest), ``inner_lr``, ``storage``
    (masked) and ``study``. Chapter 5."""
    config = given.get("config")
    for name, value in (config.to_dict() if config else {}).items():
        if name in OPERATIONAL or name not in saved["config"]:
            continue
        if not _same(value, saved["config"][name]):
            return _line(f"--{name}", value, saved["config"][name], run_dir)
    pairs = (
        ("--model", given.get("initial"), saved["initial"]["digest"]),
        ("--inner_lr", given.get("inner_lr"), saved["initial"]["inner_lr"]),
        ("--storage", given.get("storage"), run_storage(saved, run_dir)),
        ("--study", given.get("study"), saved["study"]),
    )
    for flag, value, was in pairs:
        if value is not None and not _same(value, was):
            if flag == "--model":
                value, was = "another model", f"{saved['initial']['source']}"
            return _line(flag, value, was, run_dir)
    return None


def run_storage(saved: dict, run_dir) -> str:
    """The (masked) storage URL of a saved run; its own journal is the one in its run
    directory, wherever the directory has moved. Chapter 5."""
    if saved.get("own_journal"):
        return f"journal:{Path(run_dir).absolute() / 'study.log'}"
    return saved["storage"]


def _line(flag: str, value, was, run_dir) -> str:
    return (
        f"{flag} {value} differs from the run in {run_dir} ({was}); {FRESH}another "
        "--out)"
    )


def claim_study(shared: SharedStudy, run_id: str, may_reset: bool) -> None:
    """Make `shared` this run's study: mark a new or empty one as ours, keep ours,
    reset one we may reset (the run's own journal, or the study of the run this one
    replaces), and refuse any other run's (chapter 5)."""
    owner = shared.attrs().get("run")
    if owner == run_id:
        return
    trials = len(shared.trials())
    if trials or owner is not None:
        if not may_reset:
            raise StorageError(
                f"study {shared.name!r} in {shared.where.masked} holds another run "
                f"({trials} trials, run {owner}); use another --study, or delete it "
                f"first: optuna delete-study --storage URL --study-name {shared.name}"
            )
        log.warning(
            "study %r held an earlier run (%d trials): reset", shared.name, trials
        )
        shared.reset()
    shared.post("run", run_id)


class PersistentRun:
    """The run's memory, which the agent inherits: where the run lives, its current
    model, history, archive and safety counters, saved as one unit after every change
    and restored on resume (chapter 5)."""

    def _open_run(
        self, run_dir, storage, study, config, overrides, resume, model, inner_lr
    ) -> None:
        """Resume the run in `run_dir` (refusing settings that differ from its own) or
        start one afresh there; take the directory's lock either way."""
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="rsi-")).absolute()
        self.lock = RunLock(self.run_dir).acquire()
        try:
            self._start(storage, study, config, overrides, resume, model, inner_lr)
        except BaseException:
            self.lock.release()
            raise

    def _start(self, storage, study, config, overrides, resume, model, inner_lr):
        journal = f"journal:{self.run_dir / 'study.log'}"
        self.history, self.archive, self._pending = [], [], {}
        self.floor, self.emergencies, self.halted, self._replaces = None, 0, None, None
        explicit = RSIConfig(**{**config.to_dict(), **overrides}) if config else None
        if resume and has_state(self.run_dir):
            ckpt = load_state(self.run_dir)
            saved = {**ckpt.extra, "config": ckpt.config}
            given = (
                RSIConfig(**{**ckpt.config, **overrides}) if not explicit else explicit
            )
            where = None if storage is None else parse_storage(storage)
            problem = resume_conflict(
                saved,
                self.run_dir,
                config=given,
                storage=where and where.masked,
                study=study,
            )
            if problem:
                raise ValueError(problem)
            if where is None and "***" in saved["storage"]:
                raise ValueError(
                    f"the run in {self.run_dir} uses {saved['storage']}: pass that "
                    "storage again (--storage) to resume it"
                )
            self.where = where or parse_storage(run_storage(saved, self.run_dir))
            operational = {name: getattr(given, name) for name in OPERATIONAL}
            self.config = RSIConfig(**{**ckpt.config, **operational})
            self._restore(ckpt)
        else:
            if has_state(self.run_dir):  # afresh: the earlier run's study may be reset
                try:
                    self._replaces = load_state(self.run_dir).extra.get("run_id")
                except RuntimeError:
                    pass
            self.where = parse_storage(storage or journal)
            self.own_journal = self.where.masked == journal
            if self.own_journal:  # the run's own journal starts afresh too
                for name in ("study.log", "study.log.flock"):
                    (self.run_dir / name).unlink(missing_ok=True)
            self.config = explicit or RSIConfig(**overrides)
            self.study_name, self.run_id = study or "rsi", uuid.uuid4().hex[:12]
            self.current = Candidate(model, float(inner_lr))
            self.initial = {
                "digest": weights_digest(model),
                "inner_lr": float(inner_lr),
                "source": str(getattr(model, "source", "the given model")),
            }
            self._archive(-1, None)
            self.save()
        self.storage, self.own_journal = self.where.masked, self.where.masked == journal

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
        model, lr = self.current_model, self.current.inner_lr
        self._pending[name] = lambda path: model.save(path, extra={"inner_lr": lr})
        self.archive.append(
            {
                "cycle": cycle,
                "path": str(self.run_dir / "archive" / name),
                "inner_lr": lr,
                "validation": validation,
            }
        )

    def save(self) -> Path:
        """Write the run's state as one unit: `agent.pt` (current weights and state),
        `history.json` and the archive (`ssm_metarl.rsi.state`)."""
        state = {
            "model_config": asdict(self.current_model.config),
            "inner_lr": self.current.inner_lr,
            "history": [r.to_dict() for r in self.history],
            "archive": self.archive,
            "floor": self.floor,
            "emergencies": self.emergencies,
            "halted": self.halted,
            "storage": self.where.masked,
            "study": self.study_name,
            "run_id": self.run_id,
            "initial": self.initial,
            "own_journal": self.own_journal,
        }
        saved = {Path(e["path"]).name for e in self.archive} - set(self._pending)
        path = save_state(
            self.run_dir,
            dict(
                kind="RSIAgent",
                config=self.config.to_dict(),
                state_dict=self.current_model.state_dict(),
                extra=state,
            ),
            {"config": self.config.to_dict(), **state},
            self._pending,
            carry=saved,
        )
        self._pending = {}
        return path

    def _restore(self, ckpt) -> None:
        extra = ckpt.extra
        model = StateSpaceModel(**extra["model_config"])
        model.load_state_dict(ckpt.state_dict)
        self.current = Candidate(model, float(extra["inner_lr"]))
        self.history = [CycleReport.from_dict(r) for r in extra["history"]]
        self.archive, self.floor = extra["archive"], extra["floor"]
        for entry in self.archive:  # the run directory may have moved since
            entry["path"] = str(self.run_dir / "archive" / Path(entry["path"]).name)
        self.emergencies, self.halted = extra["emergencies"], extra["halted"]
        self.run_id, self.initial = extra["run_id"], extra["initial"]
        self.study_name = extra["study"]
        log.info("resumed %s after %d cycle(s)", self.run_dir, len(self.history))

    def rollback(self, cycle: int = -1) -> StateSpaceModel:
        """Make the model archived at `cycle` (-1: the initial one) current again, and
        save."""
        entry = next(e for e in self.archive if e["cycle"] == cycle)
        self.current = Candidate(StateSpaceModel.load(entry["path"]), entry["inner_lr"])
        self.archive.append(dict(entry))
        self.save()
        return self.current_model

"""The resumable state of a MAML-RL meta-training run: what it saves, and the checks a
saved run passes before it is resumed (chapter 3).

`MetaRunState` holds the logs, the best weights so far and where the run stopped; it
writes itself atomically with the weights and Adam's state, and refuses a file that is
unsafe, damaged, non-finite or of another run with a one-line `CheckpointError` that
says how to start afresh. The run itself is `ssm_metarl.meta.training.meta_train`.
Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from ..io.checkpoint import (
    CheckpointError,
    WrongCheckpointError,
    check_weights,
    load_checkpoint,
    save_checkpoint,
)
from .maml import MetaMAML
from .maml_rl import MetaRLConfig

__all__ = ["MetaRunState"]


@dataclass
class MetaRunState:
    """Everything a meta-training run needs to resume, besides the weights and Adam: the
    logs, the best weights so far, and where it stopped. Saves and loads itself
    (chapter 3).
    """

    history: dict[str, list] = field(default_factory=dict)  # one row per epoch
    validation: dict[str, list] = field(default_factory=dict)  # one row per validation
    # the weights that scored best on the validation tasks
    best_state: dict | None = None
    best_epoch: int | None = None
    best_score: float = -math.inf
    next_epoch: int = 0
    env_steps: int = 0
    seconds: float = 0.0  # wall time of the run so far, over every resumed part

    def save(self, path, model, maml: MetaMAML, config: MetaRLConfig) -> None:
        """Write the run atomically to `path` (weights, Adam's state, this state, the
        config)."""
        extra = {
            "maml": maml.state_dict(),
            **{f.name: getattr(self, f.name) for f in fields(self)},
        }
        save_checkpoint(
            path,
            kind="MetaTrainState",
            config=config.to_dict(),
            state_dict=model.state_dict(),
            extra=extra,
        )

    @classmethod
    def check(
        cls,
        path,
        model,
        config: MetaRLConfig,
        fresh: str = "pass resume=False or another checkpoint path",
    ):
        """Read the run saved at `path` and check it like a checkpoint: safe, intact,
        finite, the same config (only `epochs` may grow), weights that fit `model`, and
        a consistent state. Any problem is a one-line `CheckpointError` ending in
        `fresh` (how to start afresh). Chapter 3."""
        try:
            ckpt = load_checkpoint(path, kind="MetaTrainState")
            want = config.to_dict()
            found = ckpt.config
            changed = sorted(
                k
                for k in set(want) | set(found)
                if k != "epochs" and found.get(k, "?") != want.get(k, "?")
            )
            if changed:  # more epochs is fine: that extends the run
                pairs = ", ".join(
                    f"{k}={found.get(k, 'missing')!r} there, "
                    f"{want.get(k, 'missing')!r} here"
                    for k in changed[:2]
                )
                raise WrongCheckpointError(
                    f"{path} was written with a different config (differs in "
                    f"{changed}: {pairs})"
                )
            check_weights(
                ckpt.state_dict,
                model.state_dict(),
                source=f"{path} (a run of another model size?)",
            )
            _check_run(path, ckpt.extra, model, config)
        except CheckpointError as exc:
            raise type(exc)(f"{exc}; {fresh}") from None
        return ckpt

    @classmethod
    def load(
        cls,
        path,
        model,
        maml: MetaMAML,
        config: MetaRLConfig,
        fresh: str = "pass resume=False or another checkpoint path",
    ) -> "MetaRunState":
        """Load a run saved by `save` into `model` and `maml` after `check`; only
        `epochs` may differ in `config`."""
        ckpt = cls.check(path, model, config, fresh)
        model.load_state_dict(ckpt.state_dict)
        try:
            maml.load_state_dict(ckpt.extra["maml"])
            for param, state in maml.optimizer.state.items():
                for key, value in state.items():
                    if (
                        isinstance(value, torch.Tensor)
                        and value.dim()
                        and value.shape != param.shape
                    ):
                        raise ValueError(
                            f"optimizer state {key} has shape {tuple(value.shape)} for "
                            "a "
                            f"parameter of shape {tuple(param.shape)}"
                        )
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise WrongCheckpointError(
                f"{path}: its optimizer state does not fit ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); {fresh}"
            ) from None
        return cls(**{f.name: ckpt.extra[f.name] for f in fields(cls)})


def _check_run(path, extra: dict, model, config: MetaRLConfig) -> None:
    """Raise `WrongCheckpointError` naming the first field of a saved run that is
    missing, mistyped or inconsistent."""

    def bad(message):
        raise WrongCheckpointError(f"{path}: {message}")

    missing = sorted({"maml", *(f.name for f in fields(MetaRunState))} - set(extra))
    if missing:
        bad(f"not a complete run state (missing {missing})")
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    for name in ("next_epoch", "env_steps"):
        if not is_int(extra[name]) or extra[name] < 0:
            bad(f"{name} must be an int >= 0, got {extra[name]!r}")
    if (
        not isinstance(extra["seconds"], (int, float))
        or not 0 <= extra["seconds"] < math.inf
    ):
        bad(f"seconds must be a finite number >= 0, got {extra['seconds']!r}")
    for name in ("history", "validation"):
        table = extra[name]
        if not isinstance(table, dict) or not all(
            isinstance(v, list) for v in table.values()
        ):
            bad(
                f"{name} must be a dict of lists (one row per epoch), got "
                f"{type(table).__name__}"
            )
        if len({len(v) for v in table.values()}) > 1:
            bad(
                f"{name}'s columns have different lengths "
                f"{sorted({k: len(v) for k, v in table.items()}.items())}"
            )
    rows = len(next(iter(extra["history"].values()), []))
    if rows != extra["next_epoch"]:
        bad(f"next_epoch is {extra['next_epoch']} but the history has {rows} epoch(s)")
    if extra["next_epoch"] > config.epochs:
        bad(
            f"the run has already done {extra['next_epoch']} epochs but "
            f"epochs={config.epochs}; "
            f"ask for at least {extra['next_epoch']} epochs"
        )
    if extra["best_epoch"] is None:
        if extra["best_state"] is not None:
            bad("best_state is set but best_epoch is None")
    else:
        if not is_int(extra["best_epoch"]) or not 0 <= extra["best_epoch"] < max(
            extra["next_epoch"], 1
        ):
            bad(
                f"best_epoch must be an epoch already run (< {extra['next_epoch']}), "
                f"got {extra['best_epoch']!r}"
            )
        if not isinstance(extra["best_score"], (int, float)) or not math.isfinite(
            extra["best_score"]
        ):
            bad(f"best_score must be a finite number, got {extra['best_score']!r}")
        if not isinstance(extra["best_state"], dict):
            bad("best_epoch is set but best_state holds no weights")
        check_weights(
            extra["best_state"], model.state_dict(), source=f"{path} best_state"
        )
    maml = extra["maml"]
    if not (
        isinstance(maml, dict)
        and isinstance(maml.get("optimizer"), dict)
        and is_int(maml.get("updates"))
        and is_int(maml.get("skipped_updates"))
    ):
        bad("maml must hold the optimizer's state and the update counters")

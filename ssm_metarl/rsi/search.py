"""What recursive self-improvement searches and how a proposal is judged: the settings,
the search space, training a candidate, and scoring it.

A *round* is one cycle's call for proposals (`ssm_metarl.rsi.study`). A worker
(`ssm_metarl.rsi.worker`) lets Optuna's sampler `suggest` a proposal from
`SEARCH_SPACE`, builds it with `train_candidate`, checks it with `unsafe_reason` and
`score`s it on the `validation_tasks` with the cycle's seed. Optuna is imported only
when a study is opened. Taught in chapter 5 (`book/05_recursive_self_improvement.md`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from ..cartpole.tasks import get_family
from ..io.validation import check_choice, check_int, check_positive, check_unit_interval
from ..meta.evaluation import evaluate_adaptation
from ..meta.maml import MetaMAML
from ..meta.maml_rl import MetaRLConfig, policy_gradient_loss
from ..meta.training import meta_epoch
from ..models.policy import SSMPolicy
from ..models.ssm import StateSpaceModel

__all__ = [
    "RSIConfig",
    "CATEGORICAL",
    "Candidate",
    "SEARCH_SPACE",
    "suggest",
    "train_candidate",
    "validation_tasks",
    "score",
    "unsafe_reason",
    "search_distributions",
]

log = logging.getLogger(__name__)

#: What Optuna may propose: how the current weights go on training (PBT's explore).
#: Step sizes on a log scale; tasks per outer step (the number of outer steps then
#: follows from the fixed budget); growth in whole blocks of 8 units, the size at which
#: `StateSpaceModel.widened` is bit-exact on this CPU (chapter 5).
SEARCH_SPACE = {
    "inner_lr": (0.03, 1.0),
    "outer_lr": (3e-4, 1e-2),
    "max_grad_norm": (0.3, 3.0),
    "tasks_per_epoch": (5, 10, 20),
    "grow_state": (0, 8),
    "grow_hidden": (0, 8, 16),
}
#: The proposals drawn from a list of choices, not from a range.
CATEGORICAL = ("tasks_per_epoch", "grow_state", "grow_hidden")
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
    # every candidate's training budget, the same in every cycle: it trains whole outer
    # steps (epochs) until it has used this many environment steps
    max_env_steps: int = 100_000
    # at most this many epochs (0: only the proposal's step size and growth)
    train_epochs: int = 1000
    # tasks per epoch when a proposal does not set it (Optuna's proposals always do)
    tasks_per_epoch: int = 10
    # support episodes per task (training and the one adaptation step)
    episodes: int = 10
    eval_episodes: int = 10  # fresh episodes per task that score an adapted policy
    # tasks that decide (the family's fixed validation split, topped up)
    validation_tasks: int = 32
    test_tasks: int = 48  # held-out tasks that only report, never decide
    # a safety cap on one candidate's training time, far above what the budget needs
    max_train_seconds: float = 600.0
    # "signflip": accept if the sign-flip test finds the paired gain above margin;
    # "ci": if the gain's bootstrap CI lies above margin; "naive": if its mean does
    rule: str = "signflip"
    # the test's one-sided level is (1 - confidence) / 2, split over the cycle's
    # candidates (Bonferroni) when there are several
    confidence: float = 0.95
    margin: float = 0.0  # an improvement must exceed this many return points
    # a candidate scoring below this fraction of the current return has diverged
    instability: float = 0.5
    # halt when the current model falls below this fraction of its first score
    floor_fraction: float = 0.5
    # halt after this many consecutive cycles whose every candidate was unsafe
    max_emergency_stops: int = 2
    # a worker or trial silent this long is lost (heartbeats come every few seconds)
    stale_seconds: float = 60.0
    seed: int = 0

    def __post_init__(self):
        check_choice("rule", self.rule, ("signflip", "ci", "naive"))
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
        # n tasks give the sign-flip test 2^n sign patterns, so p >= 2^-n: too few
        # tasks and the gate can never open
        alpha = (1 - self.confidence) / 2 / self.candidates
        if self.rule == "signflip" and 2.0**-self.validation_tasks >= alpha:
            need = math.floor(math.log2(1 / alpha)) + 1
            raise ValueError(
                f"validation_tasks={self.validation_tasks} is too few for the "
                f"sign-flip rule: its p-value is at least 2^-{self.validation_tasks}, "
                f"never below the level {alpha:.4f}, so no candidate could be "
                f"accepted; use >= {need} tasks, or fewer candidates"
            )

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
        "tasks_per_epoch": trial.suggest_categorical(
            "tasks_per_epoch", space["tasks_per_epoch"]
        ),
        "grow_state": trial.suggest_categorical("grow_state", space["grow_state"]),
        "grow_hidden": trial.suggest_categorical("grow_hidden", space["grow_hidden"]),
    }


def search_distributions() -> dict:
    """`SEARCH_SPACE` as Optuna distributions, to check that a study's trials come from
    this search space (chapter 5)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {
        name: CategoricalDistribution(space)
        if name in CATEGORICAL
        else FloatDistribution(*space, log=True)
        for name, space in SEARCH_SPACE.items()
    }


def train_candidate(
    current: Candidate,
    params: dict,
    config: RSIConfig,
    seed: int,
    heartbeat: Callable[[], None] = lambda: None,
) -> tuple[Candidate, dict]:
    """Build and train one proposal from the current weights (PBT's exploit) with the
    proposal's settings (explore): widen a copy of the current model (same function at
    first), then meta-train it with MAML until it has used the budget of
    `max_env_steps` environment steps. The current model is never touched. Defined in
    chapter 5 (`05_recursive_self_improvement`)."""
    model = current.model.widened(
        current.model.state_dim + int(params.get("grow_state", 0)),
        current.model.hidden_dim + int(params.get("grow_hidden", 0)),
        seed=seed,
    )
    cfg = MetaRLConfig(
        family=config.family,
        epochs=max(1, config.train_epochs),
        tasks_per_epoch=int(params.get("tasks_per_epoch", config.tasks_per_epoch)),
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
        "budget": config.max_env_steps,
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

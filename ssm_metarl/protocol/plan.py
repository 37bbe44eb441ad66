"""The replication study's plan: which methods, families, seeds, budgets and step sizes
(chapters 3-4).

A conclusion about methods rests on several independently trained models per method,
each trained with the same budget and with step sizes tuned on validation tasks. This
module fixes all of that in one place, as data: `Unit` is one training run, `PLAN`
lists every run in the order `ssm_metarl.protocol.runner` executes them. Taught in
chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

__all__ = [
    "FAMILIES",
    "METHODS",
    "SEEDS",
    "TUNING_SEED",
    "OUTER_LRS",
    "TRAIN_INNER_LRS",
    "BUDGET",
    "MODEL",
    "IN_CONTEXT_FAMILY",
    "IN_CONTEXT_STEPS",
    "Unit",
    "tuning_units",
    "inner_tuning_units",
    "replication_units",
    "in_context_units",
]

#: The goal families whose margins the book reports.
FAMILIES = ("goal", "goal_sharp")
#: The methods compared: MAML, ANIL (head-only inner loop) and multi-task training.
METHODS = ("maml", "anil", "multitask")
#: Training seeds of the replicated models (five per method and family).
SEEDS = (0, 1, 2, 3, 4)
#: The seed of the tuning runs: never one of the replication seeds.
TUNING_SEED = 100
#: Outer (Adam) step sizes tried for every method.
OUTER_LRS = (0.001, 0.003, 0.01)
#: Inner step sizes tried while meta-training (MAML, ANIL); 0.3 in the first round,
#: the others at the best outer step size.
TRAIN_INNER_LRS = (0.3, 0.1, 1.0)
#: The equal budget: every method makes 60 outer steps on 20 tasks x 20 episodes
#: (multi-task plays its 20 episodes per task at once, MAML 10 before and 10 after its
#: inner step), and is validated every 5 outer steps.
BUDGET = {
    "epochs": 60,
    "tasks_per_epoch": 20,
    "episodes": 10,
    "adaptation_steps": 1,
    "eval_every": 5,
}
#: The card's model: `StateSpaceModel(state_dim=32, input_dim=4, output_dim=4,
#: hidden_dim=64)`, 6,744 weights.
MODEL = {"state_dim": 32, "input_dim": 4, "output_dim": 4, "hidden_dim": 64}
#: The family of the in-context policy (both flip worlds, varied physics).
IN_CONTEXT_FAMILY = "flip+physics"
#: The in-context policy's budget of environment steps (it stops sooner once its
#: worse world reaches 499.5 on validation tasks).
IN_CONTEXT_STEPS = 1_000_000


@dataclass(frozen=True)
class Unit:
    """One training run of the study: `kind` is "tuning" or "replication" (meta- or
    multi-task training) or "in_context" (balanced PPO). Chapter 3."""

    kind: str
    family: str
    method: str
    seed: int
    outer_lr: float | None = None
    inner_lr: float | None = None

    @property
    def name(self) -> str:
        family = self.family.replace("+", "_")
        if self.kind == "tuning":
            return (
                f"tuning/{family}_{self.method}_outer{self.outer_lr:g}"
                f"_inner{self.inner_lr:g}"
            )
        return f"{family}_{self.method}_seed{self.seed}"

    def path(self, root: Path) -> Path:
        return Path(root) / f"{self.name}.pth"

    def to_dict(self) -> dict:
        return asdict(self)


def _meta(method: str) -> bool:
    return method != "multitask"


def tuning_units() -> list[Unit]:
    """First round: every outer step size for every method and family (inner 0.3 for
    the meta-learners; multi-task has no inner step while training). Chapter 3."""
    return [
        Unit(
            "tuning",
            family,
            method,
            TUNING_SEED,
            lr,
            TRAIN_INNER_LRS[0] if _meta(method) else 0.01,
        )
        for family in FAMILIES
        for method in METHODS
        for lr in OUTER_LRS
    ]


def inner_tuning_units(best_outer: dict[tuple[str, str], float]) -> list[Unit]:
    """Second round: the other inner step sizes at each meta-learner's best outer
    step size (chapter 3)."""
    return [
        Unit("tuning", family, method, TUNING_SEED, best_outer[family, method], lr)
        for family in FAMILIES
        for method in METHODS
        if _meta(method)
        for lr in TRAIN_INNER_LRS[1:]
    ]


def replication_units(best: dict[tuple[str, str], Unit]) -> list[Unit]:
    """Five seeds of every method and family at its tuned step sizes (chapter 3)."""
    return [
        replace(best[family, method], kind="replication", seed=seed)
        for family in FAMILIES
        for method in METHODS
        for seed in SEEDS
    ]


def in_context_units() -> list[Unit]:
    """Five seeds of the in-context policy (its recipe is chapter 4's, untuned)."""
    return [Unit("in_context", IN_CONTEXT_FAMILY, "incontext", s) for s in SEEDS]

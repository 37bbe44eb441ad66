"""Named task sets, held-out regions and strata: the tasks every comparison in the book
is scored on (chapters 3-6).

A family's fixed splits (`ssm_metarl.cartpole.tasks.TaskDistribution`) serve training
and checkpoint selection. A comparison needs more than that:

- **validation**: the family's fixed validation tasks. Checkpoints and step sizes are
  chosen on them, so no result is reported on them;
- **test**: fresh draws from the *training* distribution, never seen in training or
  selection; for a goal family, stratified so that each distance band holds the same
  number of goals;
- **held_out**: a region the training distribution never reaches, reported apart under
  its own name: goals beyond the training range, or physics from the held-out ranges.

Every task carries its strata: the goal's distance band (`near`, `middle`, `far` are
the thirds of the family's goal range, `beyond` lies outside it), the physics (`in
range` or `out of range`) and the world (`normal` or `flipped`). A flip family at
default physics has only two tasks, so it has no unseen test tasks at all: its sets say
so (`TaskSet.held_out_tasks` is False). Taught in chapter 3 (`book/03_maml.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.validation import check_int
from .tasks import (
    _PHYSICS,
    GOAL_MAX_STEPS,
    GOAL_RANGE,
    GOAL_SHARP_RANGE,
    GOAL_SHARP_WIDTH,
    PHYSICS_RANGES,
    CartPoleTask,
    get_family,
)

__all__ = [
    "TaskSet",
    "task_sets",
    "goal_band",
    "BANDS",
    "HELD_OUT_GOAL_MARGIN",
    "SET_SEEDS",
]

#: The goal-distance bands, as fractions of the family's goal range: near is the
#: inner third of |goal|, far the outer third. A uniform goal puts 1/3 in each.
BANDS = {"near": (0.0, 1 / 3), "middle": (1 / 3, 2 / 3), "far": (2 / 3, 1.0)}
#: The held-out goal region: |goal| in (range end, range end + this margin] metres.
HELD_OUT_GOAL_MARGIN = 0.3
#: Seeds of the named sets' draws (the family's own splits use 1,000-3,000).
SET_SEEDS = {"test": 7_001, "held_out": 7_002}


@dataclass(frozen=True)
class TaskSet:
    """A named set of tasks with each task's strata (chapter 3).

    `strata[key][i]` is task i's stratum under `key` ("band", "physics", "world"); a
    key is present only where the family varies it."""

    name: str
    family: str
    tasks: tuple[CartPoleTask, ...]
    strata: dict[str, tuple[str, ...]]
    description: str

    def __len__(self) -> int:
        return len(self.tasks)

    def indices(self, key: str, value: str) -> np.ndarray:
        """Positions of the tasks whose stratum `key` is `value`."""
        if key not in self.strata:
            raise ValueError(
                f"task set {self.name!r} of {self.family!r} has no stratum {key!r}; "
                f"it has {sorted(self.strata)}"
            )
        return np.flatnonzero(np.array(self.strata[key]) == value)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "tasks": [t.to_dict() for t in self.tasks],
            "strata": {k: list(v) for k, v in self.strata.items()},
        }


def _goal_range(family) -> tuple[float, float] | None:
    if "goal_sharp" in family.components:
        return GOAL_SHARP_RANGE
    if "goal" in family.components:
        return GOAL_RANGE
    return None


def goal_band(goal: float, family) -> str:
    """The distance band of `goal` in `family` (a name or a `TaskDistribution`):
    near, middle or far (thirds of the goal range), or beyond it (chapter 3)."""
    family = get_family(family) if isinstance(family, str) else family
    span = _goal_range(family)
    if span is None:
        raise ValueError(f"family {family.name!r} has no goals, so no goal bands")
    fraction = abs(float(goal)) / span[1]
    for name, (low, high) in BANDS.items():
        if low <= fraction <= high:
            return name
    return "beyond"


def _strata(family, tasks, physics: str) -> dict[str, tuple[str, ...]]:
    strata = {}
    if _goal_range(family) is not None:
        strata["band"] = tuple(goal_band(t.goal, family) for t in tasks)
    if "physics" in family.components:
        strata["physics"] = (physics,) * len(tasks)
    if "flip" in family.components:
        strata["world"] = tuple("flipped" if t.flip else "normal" for t in tasks)
    return strata


def _goal_tasks(family, abs_goals: np.ndarray, signs: np.ndarray, physics) -> list:
    span = _goal_range(family)
    width = GOAL_SHARP_WIDTH if span == GOAL_SHARP_RANGE else None
    return [
        CartPoleTask(
            goal=float(s * g),
            goal_width=width,
            max_steps=GOAL_MAX_STEPS,
            **(p or {}),
        )
        for g, s, p in zip(abs_goals, signs, physics)
    ]


def _physics_draws(family, n: int, rng, which: str) -> list:
    if "physics" not in family.components:
        return [None] * n
    ranges = PHYSICS_RANGES[which]
    return [{k: float(rng.uniform(*ranges[k])) for k in _PHYSICS} for _ in range(n)]


def _flip(family, tasks, rng) -> list:
    if "flip" not in family.components:
        return list(tasks)
    # half of each set per world, in random order
    worlds = np.arange(len(tasks)) % 2 == 1
    rng.shuffle(worlds)
    return [
        CartPoleTask(**{**t.to_dict(), "flip": bool(w)}) for t, w in zip(tasks, worlds)
    ]


def _draw(family, n: int, seed: int, region: str) -> list:
    """n tasks of `family`: in distribution ("test") or in its held-out region."""
    rng = np.random.default_rng(seed)
    physics = _physics_draws(family, n, rng, "train" if region == "test" else "test")
    span = _goal_range(family)
    if span is not None:
        end = span[1]
        if region == "test":  # the same count in every band
            bands = list(BANDS.values())
            edges = [bands[i % len(bands)] for i in range(n)]
            goals = np.array([rng.uniform(lo * end, hi * end) for lo, hi in edges])
        else:
            goals = rng.uniform(end, end + HELD_OUT_GOAL_MARGIN, size=n)
        signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        tasks = _goal_tasks(family, goals, signs, physics)
    else:
        tasks = [CartPoleTask(**(p or {})) for p in physics]
    return _flip(family, tasks, rng)


def task_sets(family: str, n: int = 48) -> dict[str, TaskSet]:
    """The named task sets of `family`: validation, test and, where the family allows
    one, held_out (chapter 3).

    `n` tasks each (validation keeps the family's fixed validation split). A family
    that varies neither goal nor physics has no held-out region; a finite one (flip)
    has no unseen test tasks either, and its test set says so in its description.
    """
    dist = get_family(family)
    n = check_int("n", n)
    validation = list(dist.validation)
    sets = {
        "validation": TaskSet(
            "validation",
            dist.name,
            tuple(validation),
            _strata(dist, validation, "in range"),
            "the family's fixed validation tasks: checkpoints and step sizes are "
            "chosen on them, no result is reported on them",
        )
    }
    if dist.finite:
        tasks = [dist.test[i % len(dist.test)] for i in range(n)]
        sets["test"] = TaskSet(
            "test",
            dist.name,
            tuple(tasks),
            _strata(dist, tasks, "in range"),
            f"not held out: the {len(dist.test)} tasks of {dist.name!r}, each "
            f"repeated; they were also used in training",
        )
        return sets
    tasks = _draw(dist, n, SET_SEEDS["test"], "test")
    sets["test"] = TaskSet(
        "test",
        dist.name,
        tuple(tasks),
        _strata(dist, tasks, "in range"),
        f"{n} fresh draws from the training distribution"
        + (", the same number per goal band" if _goal_range(dist) else ""),
    )
    if _goal_range(dist) is not None or "physics" in dist.components:
        tasks = _draw(dist, n, SET_SEEDS["held_out"], "held_out")
        what = []
        if _goal_range(dist) is not None:
            end = _goal_range(dist)[1]
            what.append(
                f"goals with {end:g} < |goal| <= {end + HELD_OUT_GOAL_MARGIN:g} m"
            )
        if "physics" in dist.components:
            what.append("physics from the held-out ranges")
        sets["held_out"] = TaskSet(
            "held_out",
            dist.name,
            tuple(tasks),
            _strata(dist, tasks, "out of range"),
            f"{n} tasks outside the training distribution: " + " and ".join(what),
        )
    return sets

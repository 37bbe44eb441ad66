"""CartPole as a family of tasks: physics, flipped actions and hidden goals.

A *task* is one CartPole variant (`CartPoleTask`). A *task family*
(`TaskDistribution`, built by `get_family`) draws tasks at random and fixes
disjoint train / validation / test splits, so meta-learning is always judged on tasks it
never trained on. `ssm_metarl.cartpole.envs` turns tasks into Gymnasium environments.

Taught in chapter 2 (`book/02_cartpole_tasks.md`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..io.validation import check_int, check_positive, check_range

__all__ = [
    "CartPoleTask",
    "TaskDistribution",
    "FAMILIES",
    "PHYSICS_RANGES",
    "PHYSICS_LIMITS",
    "get_family",
    "X_LIMIT",
]
#: CartPole's track half-width: the episode ends when |x| > 2.4.
X_LIMIT = 2.4

_PHYSICS = ("gravity", "masscart", "masspole", "length", "force_mag")
#: The physics `CartPoleTask` accepts: every train/test range inside, the simulator
#: finite at every corner.
PHYSICS_LIMITS = {
    "gravity": (0.1, 100.0),
    "masscart": (0.01, 100.0),
    "masspole": (0.001, 10.0),
    "length": (0.01, 10.0),
    "force_mag": (0.1, 1000.0),
}


def _goal_reward(x, goal, width):
    """1 - |x - goal|/2.4 where `width` is NaN ("goal"), else exp(-(x - goal)^2 / (2
    width^2)) ("goal_sharp")."""
    return np.where(
        np.isnan(width),
        1.0 - np.abs(x - goal) / X_LIMIT,
        np.exp(-((x - goal) ** 2) / (2 * np.nan_to_num(width, nan=1.0) ** 2)),
    )


@dataclass(frozen=True)
class CartPoleTask:
    """One CartPole variant. The defaults are plain CartPole-v1.

    The agent never observes `flip` or `goal`: it must infer them from what happens.
    Each physical constant must lie in its `PHYSICS_LIMITS` range (e.g. masspole in
    [0.001, 10] kg), where the simulator stays finite. Defined in chapter 2
    (`02_cartpole_tasks`).
    """

    gravity: float = 9.8  # m/s^2
    masscart: float = 1.0  # kg
    masspole: float = 0.1  # kg
    length: float = 0.5  # m, half the pole's length (Gymnasium's convention)
    force_mag: float = 10.0  # N, the push of one action
    flip: bool = False  # True: action 0 pushes right and action 1 pushes left
    # hidden target cart position; reward 1 - |x - goal| / 2.4 per step
    goal: float | None = None
    # if set, reward exp(-(x - goal)^2 / (2 goal_width^2)) instead (chapter 4)
    goal_width: float | None = None
    max_steps: int = 500  # episode length limit (truncation), as CartPole-v1

    def __post_init__(self):
        for name in _PHYSICS:
            value = check_positive(name, getattr(self, name))
            object.__setattr__(
                self, name, check_range(name, value, *PHYSICS_LIMITS[name])
            )
        if not isinstance(self.flip, (bool, np.bool_)):
            raise ValueError(f"flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "flip", bool(self.flip))
        if self.goal is not None:
            if (
                not isinstance(self.goal, (int, float, np.floating, np.integer))
                or isinstance(self.goal, bool)
                or not -X_LIMIT < float(self.goal) < X_LIMIT
            ):
                raise ValueError(
                    f"goal must be None or a number in (-{X_LIMIT}, {X_LIMIT}), got "
                    f"{self.goal!r}"
                )
            object.__setattr__(self, "goal", float(self.goal))
        if self.goal_width is not None:
            if self.goal is None:  # a width without a goal would be silently ignored
                raise ValueError(
                    "goal_width needs a goal: pass goal= as well, or drop goal_width"
                )
            object.__setattr__(
                self, "goal_width", check_positive("goal_width", self.goal_width)
            )
        object.__setattr__(self, "max_steps", check_int("max_steps", self.max_steps))

    def reward(self, x):
        """Reward of a step that ends at cart position `x` (scalar or array).

        1, `1 - |x - goal|/2.4`, or the Gaussian."""
        if self.goal is None:
            return np.ones_like(np.asarray(x, dtype=np.float64))
        return _goal_reward(
            np.asarray(x, dtype=np.float64),
            self.goal,
            np.nan if self.goal_width is None else self.goal_width,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        default = CartPoleTask()
        changed = [
            f"{f.name}={getattr(self, f.name):.3g}"
            if isinstance(getattr(self, f.name), float)
            else f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return "CartPoleTask(" + (", ".join(changed) or "CartPole-v1") + ")"


#
#
#
# --------------------------------------------------------------------------------------
# Task families
# --------------------------------------------------------------------------------------

#: Physics ranges (uniform). Train and validation tasks come from "train"; test tasks
#: from the held-out "test" ranges, which lie outside the training ranges (heavier,
#: longer, weaker).
PHYSICS_RANGES = {
    "train": {
        "gravity": (8.0, 12.0),
        "masscart": (0.5, 1.5),
        "masspole": (0.05, 0.2),
        "length": (0.3, 0.7),
        "force_mag": (8.0, 12.0),
    },
    "test": {
        "gravity": (12.0, 14.0),
        "masscart": (1.5, 2.0),
        "masspole": (0.2, 0.3),
        "length": (0.7, 1.0),
        "force_mag": (6.0, 8.0),
    },
}
#: Goal positions (uniform) for the "goal" component, in metres from the track centre.
GOAL_RANGE = (-1.0, 1.0)
#: Hidden-goal episodes are shorter: 200 steps are enough to reach any goal and stay
#: there.
GOAL_MAX_STEPS = 200
#: "goal_sharp" (chapter 4): goals ~ U(GOAL_SHARP_RANGE) and a Gaussian reward of this
#: width (m).
GOAL_SHARP_RANGE, GOAL_SHARP_WIDTH = (-1.5, 1.5), 0.4

#: The components a family name may combine with "+", and what each one draws.
FAMILIES = {
    "standard": "plain CartPole-v1 (a single task)",
    "flip": "flip ~ Bernoulli(0.5): left and right swapped on half of the tasks",
    "goal": (
        f"hidden goal ~ U{GOAL_RANGE}, reward 1 - |x - goal|/2.4, {GOAL_MAX_STEPS} "
        "steps"
    ),
    "physics": (
        "gravity, cart mass, pole mass, pole length and force ~ U(train ranges); test "
        "tasks from held-out ranges"
    ),
    "goal_sharp": (
        f"hidden goal ~ U{GOAL_SHARP_RANGE}, reward "
        f"exp(-(x-goal)^2/(2*{GOAL_SHARP_WIDTH}^2)), {GOAL_MAX_STEPS} steps"
    ),
}
_SPLIT_SEEDS = {"train": 1_000, "validation": 2_000, "test": 3_000}
_SPLIT_SIZES = {"train": 64, "validation": 16, "test": 32}


def _parse_family(name: str) -> tuple[str, ...]:
    valid = (
        "valid choices: "
        + ", ".join(FAMILIES)
        + ", or a '+'-combination of flip, physics and one of goal, goal_sharp "
        "(e.g. 'flip+physics')"
    )
    if not isinstance(name, str):
        raise ValueError(f"family name must be a string, got {name!r}; {valid}")
    parts = tuple(p.strip() for p in name.split("+"))
    unknown = [p for p in parts if p not in FAMILIES]
    if (
        unknown
        or len(set(parts)) != len(parts)
        or (len(parts) > 1 and "standard" in parts)
        or {"goal", "goal_sharp"} <= set(parts)
    ):
        raise ValueError(f"unknown task family {name!r}; {valid}")
    order = list(FAMILIES)
    return tuple(sorted(parts, key=order.index))


class TaskDistribution:
    """A family of CartPole tasks with fixed, disjoint train / validation / test splits.

    `sample(n, seed, split)` draws fresh tasks from a split's distribution. The fixed
    splits (`train`, `validation`, `test`) are samples with fixed seeds. A family with
    finitely many distinct tasks ("standard": 1, "flip": 2) cannot have disjoint splits:
    there each split is the whole support, and `finite` is True. Defined in chapter 2
    (`02_cartpole_tasks`).
    """

    def __init__(self, name: str):
        self.components = _parse_family(name)
        self.name = "+".join(self.components)
        self.finite = set(self.components) <= {"standard", "flip"}
        self.max_steps = (
            GOAL_MAX_STEPS if {"goal", "goal_sharp"} & set(self.components) else 500
        )
        self._splits = {
            split: tuple(self._draw(size, _SPLIT_SEEDS[split], split, fixed=True))
            for split, size in _SPLIT_SIZES.items()
        }

    def _draw(
        self, n: int, seed: int, split: str, fixed: bool = False
    ) -> list[CartPoleTask]:
        if fixed and self.finite:
            flips = (False, True) if "flip" in self.components else (False,)
            return [CartPoleTask(flip=f) for f in flips]
        rng = np.random.default_rng(seed)
        tasks = []
        for _ in range(n):
            kwargs = {"max_steps": self.max_steps}
            if "physics" in self.components:
                ranges = PHYSICS_RANGES["test" if split == "test" else "train"]
                kwargs.update({k: float(rng.uniform(*ranges[k])) for k in _PHYSICS})
            if "flip" in self.components:
                kwargs["flip"] = bool(rng.random() < 0.5)
            if "goal" in self.components:
                kwargs["goal"] = float(rng.uniform(*GOAL_RANGE))
            if "goal_sharp" in self.components:
                kwargs.update(
                    goal=float(rng.uniform(*GOAL_SHARP_RANGE)),
                    goal_width=GOAL_SHARP_WIDTH,
                )
            tasks.append(CartPoleTask(**kwargs))
        return tasks

    def sample(self, n: int, seed: int, split: str = "train") -> list[CartPoleTask]:
        """`n` tasks drawn from `split`'s distribution with
        `np.random.default_rng(seed)`."""
        n = check_int("n", n)
        if split not in _SPLIT_SEEDS:
            raise ValueError(
                f"unknown split {split!r}; valid choices: {list(_SPLIT_SEEDS)}"
            )
        return self._draw(n, seed, split)

    @property
    def train(self) -> tuple[CartPoleTask, ...]:
        """Fixed training tasks (64 for continuous families)."""
        return self._splits["train"]

    @property
    def validation(self) -> tuple[CartPoleTask, ...]:
        """Fixed validation tasks for checkpoint selection (16), from the training
        ranges."""
        return self._splits["validation"]

    @property
    def test(self) -> tuple[CartPoleTask, ...]:
        """Fixed held-out test tasks (32); for "physics", from the held-out ranges."""
        return self._splits["test"]

    def __repr__(self) -> str:
        return (
            f"TaskDistribution({self.name!r}: "
            f"{', '.join(FAMILIES[c] for c in self.components)})"
        )


def get_family(name: str) -> TaskDistribution:
    """The task family `name`: one of `FAMILIES` or a '+'-combination such as
    `"flip+physics"`.

    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    return TaskDistribution(name)

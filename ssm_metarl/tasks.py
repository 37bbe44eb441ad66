"""CartPole as a family of tasks: physics, flipped actions and hidden goals.

A *task* is one CartPole variant (`CartPoleTask`). A *task family*
(`TaskDistribution`, built by `get_family`) draws tasks at random and fixes
disjoint train / validation / test splits, so meta-learning is always judged on tasks it
never trained on. `make_env` turns a task into a real Gymnasium environment, and
`CartPoleTaskVectorEnv` steps many tasks at once (Gymnasium's own vectorised
CartPole with one set of parameters per environment).

Taught in chapter 2 (`book/02_cartpole_tasks.md`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv

from .validation import check_actions, check_int, check_positive, check_range

__all__ = [
    "compare_with_gymnasium", "GymnasiumComparison",
    "CartPoleTask", "TaskDistribution", "FAMILIES", "PHYSICS_RANGES", "PHYSICS_LIMITS", "get_family",
    "make_env", "make_vector_env", "CartPoleTaskEnv", "CartPoleTaskVectorEnv", "ENV_ID", "X_LIMIT",
]

#: The Gymnasium id under which every task environment is registered.
ENV_ID = "ssm_metarl/CartPoleTask-v0"
#: CartPole's track half-width: the episode ends when |x| > 2.4.
X_LIMIT = 2.4

_PHYSICS = ("gravity", "masscart", "masspole", "length", "force_mag")
#: The physics `CartPoleTask` accepts: every train/test range inside, the simulator finite at every corner.
PHYSICS_LIMITS = {"gravity": (0.1, 100.0), "masscart": (0.01, 100.0), "masspole": (0.001, 10.0),
                  "length": (0.01, 10.0), "force_mag": (0.1, 1000.0)}


@dataclass(frozen=True)
class CartPoleTask:
    """One CartPole variant. The defaults are plain CartPole-v1.

    The agent never observes `flip` or `goal`: it must infer them from what happens. Each
    physical constant must lie in its `PHYSICS_LIMITS` range (e.g. masspole in [0.001, 10] kg),
    where the simulator stays finite. Defined in chapter 2 (`02_cartpole_tasks`).
    """

    gravity: float = 9.8  # m/s^2
    masscart: float = 1.0  # kg
    masspole: float = 0.1  # kg
    length: float = 0.5  # m, half the pole's length (Gymnasium's convention)
    force_mag: float = 10.0  # N, the push of one action
    flip: bool = False  # True: action 0 pushes right and action 1 pushes left
    goal: float | None = None  # hidden target cart position; reward 1 - |x - goal| / 2.4 per step
    goal_width: float | None = None  # if set, reward exp(-(x - goal)^2 / (2 goal_width^2)) instead (chapter 4)
    max_steps: int = 500  # episode length limit (truncation), as CartPole-v1

    def __post_init__(self):
        for name in _PHYSICS:
            value = check_positive(name, getattr(self, name))
            object.__setattr__(self, name, check_range(name, value, *PHYSICS_LIMITS[name]))
        if not isinstance(self.flip, (bool, np.bool_)):
            raise ValueError(f"flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "flip", bool(self.flip))
        if self.goal is not None:
            if not isinstance(self.goal, (int, float, np.floating, np.integer)) or isinstance(self.goal, bool) \
                    or not -X_LIMIT < float(self.goal) < X_LIMIT:
                raise ValueError(f"goal must be None or a number in (-{X_LIMIT}, {X_LIMIT}), got {self.goal!r}")
            object.__setattr__(self, "goal", float(self.goal))
        if self.goal_width is not None:
            if self.goal is None:  # a width without a goal would be silently ignored
                raise ValueError("goal_width needs a goal: pass goal= as well, or drop goal_width")
            object.__setattr__(self, "goal_width", check_positive("goal_width", self.goal_width))
        object.__setattr__(self, "max_steps", check_int("max_steps", self.max_steps))

    def reward(self, x):
        """Reward of a step that ends at cart position `x` (scalar or array): 1, 1 - |x - goal|/2.4, or the Gaussian."""
        if self.goal is None:
            return np.ones_like(np.asarray(x, dtype=np.float64))
        return _goal_reward(np.asarray(x, dtype=np.float64), self.goal, np.nan if self.goal_width is None else self.goal_width)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        default = CartPoleTask()
        changed = [f"{f.name}={getattr(self, f.name):.3g}" if isinstance(getattr(self, f.name), float)
                   else f"{f.name}={getattr(self, f.name)}"
                   for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]
        return "CartPoleTask(" + (", ".join(changed) or "CartPole-v1") + ")"


# ----------------------------------------------------------------------------------------------
# Task families
# ----------------------------------------------------------------------------------------------

#: Physics ranges (uniform). Train and validation tasks come from "train"; test tasks from the
#: held-out "test" ranges, which lie outside the training ranges (heavier, longer, weaker).
PHYSICS_RANGES = {
    "train": {"gravity": (8.0, 12.0), "masscart": (0.5, 1.5), "masspole": (0.05, 0.2),
              "length": (0.3, 0.7), "force_mag": (8.0, 12.0)},
    "test": {"gravity": (12.0, 14.0), "masscart": (1.5, 2.0), "masspole": (0.2, 0.3),
             "length": (0.7, 1.0), "force_mag": (6.0, 8.0)},
}
#: Goal positions (uniform) for the "goal" component, in metres from the track centre.
GOAL_RANGE = (-1.0, 1.0)
#: Hidden-goal episodes are shorter: 200 steps are enough to reach any goal and stay there.
GOAL_MAX_STEPS = 200
#: "goal_sharp" (chapter 4): goals ~ U(GOAL_SHARP_RANGE) and a Gaussian reward of this width (m).
GOAL_SHARP_RANGE, GOAL_SHARP_WIDTH = (-1.5, 1.5), 0.4

#: The components a family name may combine with "+", and what each one draws.
FAMILIES = {
    "standard": "plain CartPole-v1 (a single task)",
    "flip": "flip ~ Bernoulli(0.5): left and right swapped on half of the tasks",
    "goal": f"hidden goal ~ U{GOAL_RANGE}, reward 1 - |x - goal|/2.4, {GOAL_MAX_STEPS} steps",
    "physics": "gravity, cart mass, pole mass, pole length and force ~ U(train ranges); test tasks from held-out ranges",
    "goal_sharp": f"hidden goal ~ U{GOAL_SHARP_RANGE}, reward exp(-(x-goal)^2/(2*{GOAL_SHARP_WIDTH}^2)), {GOAL_MAX_STEPS} steps",
}
_SPLIT_SEEDS = {"train": 1_000, "validation": 2_000, "test": 3_000}
_SPLIT_SIZES = {"train": 64, "validation": 16, "test": 32}


def _parse_family(name: str) -> tuple[str, ...]:
    valid = "valid choices: " + ", ".join(FAMILIES) + ", or a '+'-combination of flip, physics and one of goal, goal_sharp (e.g. 'flip+physics')"
    if not isinstance(name, str):
        raise ValueError(f"family name must be a string, got {name!r}; {valid}")
    parts = tuple(p.strip() for p in name.split("+"))
    unknown = [p for p in parts if p not in FAMILIES]
    if unknown or len(set(parts)) != len(parts) or (len(parts) > 1 and "standard" in parts) \
            or {"goal", "goal_sharp"} <= set(parts):
        raise ValueError(f"unknown task family {name!r}; {valid}")
    order = list(FAMILIES)
    return tuple(sorted(parts, key=order.index))


class TaskDistribution:
    """A family of CartPole tasks with fixed, disjoint train / validation / test splits.

    `sample(n, seed, split)` draws fresh tasks from a split's distribution. The fixed splits
    (`train`, `validation`, `test`) are samples with fixed seeds. A family with
    finitely many distinct tasks ("standard": 1, "flip": 2) cannot have disjoint splits:
    there each split is the whole support, and `finite` is True.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(self, name: str):
        self.components = _parse_family(name)
        self.name = "+".join(self.components)
        self.finite = set(self.components) <= {"standard", "flip"}
        self.max_steps = GOAL_MAX_STEPS if {"goal", "goal_sharp"} & set(self.components) else 500
        self._splits = {split: tuple(self._draw(size, _SPLIT_SEEDS[split], split, fixed=True))
                        for split, size in _SPLIT_SIZES.items()}

    def _draw(self, n: int, seed: int, split: str, fixed: bool = False) -> list[CartPoleTask]:
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
                kwargs.update(goal=float(rng.uniform(*GOAL_SHARP_RANGE)), goal_width=GOAL_SHARP_WIDTH)
            tasks.append(CartPoleTask(**kwargs))
        return tasks

    def sample(self, n: int, seed: int, split: str = "train") -> list[CartPoleTask]:
        """`n` tasks drawn from `split`'s distribution with `np.random.default_rng(seed)`."""
        n = check_int("n", n)
        if split not in _SPLIT_SEEDS:
            raise ValueError(f"unknown split {split!r}; valid choices: {list(_SPLIT_SEEDS)}")
        return self._draw(n, seed, split)

    @property
    def train(self) -> tuple[CartPoleTask, ...]:
        """Fixed training tasks (64 for continuous families)."""
        return self._splits["train"]

    @property
    def validation(self) -> tuple[CartPoleTask, ...]:
        """Fixed validation tasks for checkpoint selection (16), from the training ranges."""
        return self._splits["validation"]

    @property
    def test(self) -> tuple[CartPoleTask, ...]:
        """Fixed held-out test tasks (32); for "physics", from the held-out ranges."""
        return self._splits["test"]

    def __repr__(self) -> str:
        return f"TaskDistribution({self.name!r}: {', '.join(FAMILIES[c] for c in self.components)})"


def get_family(name: str) -> TaskDistribution:
    """The task family `name`: one of `FAMILIES` or a '+'-combination such as `"flip+physics"`.

    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    return TaskDistribution(name)


# ----------------------------------------------------------------------------------------------
# Gymnasium environments
# ----------------------------------------------------------------------------------------------

def _set_physics(env, gravity, masscart, masspole, length, force_mag) -> None:
    """Set CartPole's physical constants and the two derived ones its `step` reads."""
    env.gravity, env.masscart, env.masspole, env.length, env.force_mag = gravity, masscart, masspole, length, force_mag
    env.total_mass = masspole + masscart
    env.polemass_length = masspole * length


class CartPoleTaskEnv(CartPoleEnv):
    """Gymnasium's `CartPoleEnv` playing one `CartPoleTask`.

    The physics is Gymnasium's own `step`; the task only changes constants, swaps the
    action when `flip` is set, and replaces the reward when `goal` is set.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(self, task: CartPoleTask | None = None, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self.task = CartPoleTask() if task is None else task
        if not isinstance(self.task, CartPoleTask):
            raise ValueError(f"task must be a CartPoleTask, got {type(self.task).__name__}")
        _set_physics(self, *(getattr(self.task, k) for k in _PHYSICS))

    def step(self, action):
        action = check_actions(action)  # 0 or 1, else a ValueError
        obs, reward, terminated, truncated, info = super().step(1 - action if self.task.flip else action)
        if self.task.goal is not None and reward != 0.0:
            reward = float(self.task.reward(self.state[0]))
        return obs, reward, terminated, truncated, info


class CartPoleTaskVectorEnv(CartPoleVectorEnv):
    """Gymnasium's vectorised CartPole with one `CartPoleTask` per environment.

    Gymnasium's `CartPoleVectorEnv.step` is pure elementwise numpy, so per-environment
    parameter arrays go straight through it. Finished environments reset themselves on the
    next step (Gymnasium's "next step" autoreset); `ssm_metarl.rollout.collect` masks
    those steps out. Defined in chapter 2 (`02_cartpole_tasks`).
    """

    def __init__(self, num_envs: int | None = None, tasks: Sequence[CartPoleTask] = (), max_episode_steps: int | None = None,
                 render_mode: str | None = None):
        tasks = list(tasks) or [CartPoleTask()] * (num_envs or 1)
        if num_envs is not None and num_envs != len(tasks):
            raise ValueError(f"num_envs={num_envs} but {len(tasks)} tasks were given; pass one task per environment")
        if not all(isinstance(t, CartPoleTask) for t in tasks):
            raise ValueError("tasks must all be CartPoleTask instances")
        steps = max(t.max_steps for t in tasks) if max_episode_steps is None else check_int("max_episode_steps", max_episode_steps)
        super().__init__(num_envs=len(tasks), max_episode_steps=steps, render_mode=render_mode)
        self.tasks = tasks
        _set_physics(self, *(np.array([getattr(t, k) for t in tasks]) for k in _PHYSICS))
        self.flip = np.array([t.flip for t in tasks])
        self.goal = np.array([np.nan if t.goal is None else t.goal for t in tasks])
        self.has_goal = ~np.isnan(self.goal)
        self.goal_width = np.array([np.nan if t.goal_width is None else t.goal_width for t in tasks])

    def step(self, action):
        action = check_actions(action, self.num_envs)  # an int array of 0s and 1s, one per environment
        obs, reward, terminated, truncated, info = super().step(np.where(self.flip, 1 - action, action))
        if self.has_goal.any():
            goal_reward = _goal_reward(self.state[0], self.goal, self.goal_width)
            reward = np.where(self.has_goal & (reward != 0.0), goal_reward, reward).astype(np.float32)
        return obs, reward, terminated, truncated, info


def _goal_reward(x, goal, width):
    """1 - |x - goal|/2.4 where `width` is NaN ("goal"), else exp(-(x - goal)^2 / (2 width^2)) ("goal_sharp")."""
    return np.where(np.isnan(width), 1.0 - np.abs(x - goal) / X_LIMIT, np.exp(-(x - goal) ** 2 / (2 * np.nan_to_num(width, nan=1.0) ** 2)))


def _register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=CartPoleTaskEnv, vector_entry_point=CartPoleTaskVectorEnv)


def make_env(task: CartPoleTask | None = None, render_mode: str | None = None) -> gym.Env:
    """A real Gymnasium environment for `task`: `gym.make("ssm_metarl/CartPoleTask-v0", task=task)`.

    It carries Gymnasium's usual wrappers (time limit at `task.max_steps`, order enforcing,
    passive checker). Defined in chapter 2 (`02_cartpole_tasks`).
    """
    task = CartPoleTask() if task is None else task
    if not isinstance(task, CartPoleTask):
        raise ValueError(f"task must be a CartPoleTask, got {type(task).__name__}")
    _register()
    return gym.make(ENV_ID, task=task, render_mode=render_mode, max_episode_steps=task.max_steps)


def make_vector_env(tasks: Sequence[CartPoleTask], max_episode_steps: int | None = None) -> CartPoleTaskVectorEnv:
    """One vectorised Gymnasium environment stepping every task in `tasks` at once.

    `gym.make_vec(ENV_ID, num_envs=len(tasks), vectorization_mode="vector_entry_point", tasks=...)`.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    tasks = list(tasks)
    if not tasks:
        raise ValueError("make_vector_env needs at least one task")
    _register()
    return gym.make_vec(ENV_ID, num_envs=len(tasks), vectorization_mode="vector_entry_point",
                        tasks=tasks, max_episode_steps=max_episode_steps)


class GymnasiumComparison(NamedTuple):
    """What `compare_with_gymnasium` found (chapter 2)."""

    max_diff: float  # largest |difference| of an observation (or, against make_env, a reward) over every step
    same_end: bool  # every episode terminated at the same step in both simulators
    steps: int  # steps compared


def compare_with_gymnasium(task: CartPoleTask, n: int = 16, seed: int = 0) -> GymnasiumComparison:
    """Play `n` episodes of `task` in `make_vector_env` and, step for step with the same
    actions, in Gymnasium's own `CartPoleEnv` (given the task's physics and the same start
    state) and in `make_env`; report the largest difference of observations (and of the
    rewards of `make_env`, which knows goals, against the vector env's) and whether every
    episode ends at the same step. The actions are the rule a = [θ + 0.5 θ̇ > 0] (flipped on
    flipped tasks) with 10% random ones, so episodes are long but still end.
    Defined in chapter 2 (`02_cartpole_tasks`).
    """
    venv = make_vector_env([task] * n)
    obs, _ = venv.reset(seed=seed)
    refs, singles = [], []
    for i in range(n):
        ref = CartPoleEnv()  # Gymnasium's own class, which knows nothing of flips and goals
        for name in _PHYSICS:  # set here by hand, not by the package's own _set_physics
            setattr(ref, name, getattr(task, name))
        ref.total_mass, ref.polemass_length = task.masscart + task.masspole, task.masspole * task.length
        ref.reset(seed=0)
        ref.state = venv.state[:, i].copy()  # the same start state
        single = make_env(task)
        single.reset(seed=0)
        single.unwrapped.state = venv.state[:, i].copy()
        refs.append(ref)
        singles.append(single)
    rng = np.random.default_rng(seed)
    alive, max_diff, steps, same_end = np.ones(n, bool), 0.0, 0, True
    while alive.any():
        rule = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(int)
        actions = np.where(rng.random(n) < 0.1, rng.integers(0, 2, n), rule ^ int(task.flip))
        obs, reward, terminated, truncated, _ = venv.step(actions)
        for i in np.flatnonzero(alive):
            ref_obs, _, ref_terminated, _, _ = refs[i].step(int(actions[i] ^ int(task.flip)))
            single_obs, single_reward, single_terminated, _, _ = singles[i].step(int(actions[i]))
            max_diff = max(max_diff, float(np.abs(obs[i] - ref_obs).max()), float(np.abs(single_obs - ref_obs).max()),
                           abs(float(reward[i]) - float(single_reward)))
            same_end &= bool(terminated[i]) == ref_terminated == single_terminated
            steps += 1
            alive[i] = not (terminated[i] or truncated[i])
    venv.close()
    for single in singles:
        single.close()
    return GymnasiumComparison(max_diff, bool(same_end), steps)
